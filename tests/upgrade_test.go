package tests

import (
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/program"
)

// The stack program reads the version the running control plane records
// (its SSM parameter) and refuses, before declaring anything, a version
// change kubeadm's upgrade policy forbids, and for now any upgrade.
func TestStackRefusesAnUpgradeSkewFromTheRecordedVersion(t *testing.T) {
	const parameter = "/kubeha/kubeha-prod/kubernetes-version"
	for _, c := range []struct {
		name, running, target string
		// refusal is what the error says, "" for none.
		refusal string
	}{
		{"a new cluster", "", "v1.35.8", ""},
		// kubeha does not upgrade a running control plane yet.
		{"1.35 to 1.36", "v1.35.8", "v1.36.3", "v1.35.8, the release the control plane records: kubeha does not upgrade a running control plane yet"},
		{"1.34 to 1.36", "v1.34.5", "v1.36.3", "a release of 1.35 at most: the control plane runs v1.34.5"},
		{"the same release", "v1.36.3", "v1.36.3", ""},
		// kubeha pins no 1.37, so the stack's keys refuse it first.
		{"1.35 to 1.37", "v1.35.8", "v1.37.0", "a patch release of 1.35 or 1.36"},
		{"1.36 to 1.35", "v1.36.3", "v1.35.8", "v1.36.3 or newer: the control plane runs v1.36.3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := prodRaw()
			raw["kubeha:kubernetesVersion"] = c.target
			params := map[string]string{}
			if c.running != "" {
				params[parameter] = c.running
			}
			rec, err := mockrun.RunWithParameters("kubeha", "prod", raw, params, program.Stack(raw))
			if c.refusal != "" {
				expectRefusal(t, "stack", err, rec, "KubernetesVersion", "kubeha:kubernetesVersion")
				if err == nil || !strings.Contains(err.Error(), c.refusal) {
					t.Errorf("refused with %v, want it to say %q", err, c.refusal)
				}
			} else if err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}
