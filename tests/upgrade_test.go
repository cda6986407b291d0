package tests

import (
	"cmp"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"

	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/program"
)

// The stack program reads the version the running control plane records
// (its SSM parameter) and refuses, before declaring anything, a version
// change kubeadm's upgrade policy forbids.
func TestStackRefusesAnUpgradeSkewFromTheRecordedVersion(t *testing.T) {
	const parameter = "/kubeha/kubeha-prod/kubernetes-version"
	for _, c := range []struct {
		name, running, target string
		// refusal is what the error says, "" for none.
		refusal string
	}{
		{"a new cluster", "", "v1.35.8", ""},
		{"1.35 to 1.36", "v1.35.8", "v1.36.3", ""},
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

// During an upgrade (the record one minor behind the stack), every
// control-plane and worker launch template installs the new release but
// holds its kubelet at the recorded one until the record moves, imports
// both releases' images, and may read the record; control-plane nodes
// also get the timer that swaps their kubelet in place.
func TestAnUpgradeHoldsNewKubeletsAtTheRecordedRelease(t *testing.T) {
	const parameter = "/kubeha/kubeha-prod/kubernetes-version"
	for _, c := range []struct {
		name, running string
		holds         bool
	}{{"upgrading from 1.35", "v1.35.8", true}, {"at the recorded release", "v1.36.3", false}} {
		t.Run(c.name, func(t *testing.T) {
			raw := prodRaw()
			raw["kubeha:kubernetesVersion"] = "v1.36.3"
			rec, err := mockrun.RunWithParameters("kubeha", "prod", raw, map[string]string{parameter: c.running}, program.Stack(raw))
			if err != nil {
				t.Fatal(err)
			}
			templates := 0
			for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
				tags := lt.Tags()
				role := "worker"
				if strings.Contains(lt.Name, "control-plane") {
					role = "control-plane"
				} else if tags["kubeha.io/pool"] == "" {
					continue // an etcd member's
				}
				templates++
				var data string
				for path, content := range renderedFiles(t, lt.String("userData")) {
					data += path + "\n" + content
				}
				for _, want := range []string{"KUBELET_HELD_VERSION=v1.35.8", "kubernetes/v1.35.8/kubelet", "kubernetes/v1.35.8/kube-proxy.tar"} {
					if got := strings.Contains(data, want); got != c.holds {
						t.Errorf("%s (%s): holds %q: %v, want %v", lt.Name, role, want, got, c.holds)
					}
				}
				if got := strings.Contains(data, "kubelet-follow"); got != (c.holds && role == "control-plane") {
					t.Errorf("%s (%s): the kubelet-follow timer: %v", lt.Name, role, got)
				}
			}
			if templates != 6 {
				t.Errorf("%d control-plane and worker launch templates, want 6 (3 zones each)", templates)
			}
			for _, p := range rec.OfType("aws:iam/rolePolicy:RolePolicy") {
				if p.Name != "kubeha-prod-control-plane" && !strings.HasPrefix(p.Name, "kubeha-prod-general-") || strings.HasSuffix(p.Name, "-bootstrap") {
					continue
				}
				if policy := p.String("policy"); !strings.Contains(policy, "ssm:GetParameter") || !strings.Contains(policy, parameter) {
					t.Errorf("%s may not read the version record %s: %s", p.Name, parameter, policy)
				}
			}
		})
	}
}

// TestUpgradeUserDataFitsTheEC2Limit: during an upgrade a control-plane
// node's user-data is at its largest (the held kubelet, both releases'
// images, the kubelet-follow timer). Every stack's stays within the 16 KB
// EC2 takes; the headroom is measured.
func TestUpgradeUserDataFitsTheEC2Limit(t *testing.T) {
	for name, file := range stackFiles(t) {
		raw, err := config.ReadStackFile(file)
		if err != nil {
			t.Fatal(err)
		}
		target := cmp.Or(raw["kubeha:kubernetesVersion"], bootstrap.PinnedKubernetesVersion)
		minor, err := bootstrap.Minor(target)
		if err != nil {
			t.Fatal(err)
		}
		// The newest release before the target's minor (oldest first).
		running := ""
		for _, r := range bootstrap.KubernetesReleases {
			if m, _ := bootstrap.Minor(r.Version); m == minor {
				break
			}
			running = r.Version
		}
		if running == "" {
			t.Fatalf("%s: no supported release before %s to upgrade from", name, target)
		}
		rec, err := mockrun.RunWithParameters("kubeha", name, raw,
			map[string]string{bootstrap.RunningVersionParameter(raw["kubeha:clusterName"]): running}, program.Stack(raw))
		if err != nil {
			t.Fatalf("%s upgrading from %s: %v", name, running, err)
		}
		largest, which := 0, ""
		for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
			data, err := base64.StdEncoding.DecodeString(lt.String("userData"))
			if err != nil {
				t.Fatal(err)
			}
			if len(data) > largest {
				largest, which = len(data), lt.Name
			}
		}
		if largest > bootstrap.UserDataLimit || largest == 0 {
			t.Errorf("%s: %s's user-data is %d bytes, over the %d EC2 takes", name, which, largest, bootstrap.UserDataLimit)
		}
		t.Logf("MEASURED: %s upgrading from %s: largest user-data %d bytes (%s), %d under the EC2 limit", name, running, largest, which, bootstrap.UserDataLimit-largest)
	}
}
