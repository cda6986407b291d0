package bootstrap

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runApplier runs addons-apply.sh once on an empty set of revision
// revision, with a fake kubectl (the Lease is free), helm (no releases)
// and aws, keeping its state in state. It returns the AWS calls made.
// The Lease is renewed every second: the run's output closes only once
// the renewal's sleep ends.
func runApplier(t *testing.T, state, revision string) []string {
	t.Helper()
	calls := filepath.Join(t.TempDir(), "calls")
	bin := scriptDir(t, map[string]string{
		// The Lease is read as this node's, taken and renewed.
		"kubectl": `#!/bin/bash
case "$*" in
  *"get lease"*) echo '{"spec": {"holderIdentity": "cp-a"}}' ;;
  *) cat >/dev/null ;;
esac
`,
		"helm": "#!/bin/bash\necho '[]'\n",
		"aws": `#!/bin/bash
echo "$*" >>"` + calls + `"
if [ "$1 $2 $4" = "s3 cp $ADDON_SET_URL" ]; then
  echo '{"revision": "` + revision + `", "steps": []}' >"$5"
fi
`,
		"hostname": "#!/bin/sh\necho cp-a\n",
	}, "addons-apply.sh", "node-common.sh", "credentials.sh", "assets.sh", "due.sh", "lease.sh")
	cmd := exec.Command("bash", filepath.Join(bin, "addons-apply.sh"))
	// In a process group of its own, as systemd runs the unit: a run that
	// loses the Lease stops with `kill 0`, which must not reach the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "ROLE=control-plane", "ZONE=eu-west-1a", "ADMIN_KUBECONFIG=/dev/null",
		"ADDON_SET_URL=s3://assets/" + AddonSetKey, "ADDON_STATUS_URL=s3://assets/" + AddonStatusKey, "APPLIER_NAME=" + AddonsApplierName,
		"LEASE_SECONDS=240", "LEASE_RENEW_SECONDS=1", "HELM_TIMEOUT=60", "METRIC_NAMESPACE=kubeha", "METRIC_DIMENSIONS=Cluster=c1",
		"APPLIED_METRIC=" + AddonsAppliedMetric, "FAILED_METRIC=" + AddonsFailedMetric, "ADDON_STATE_DIR=" + state,
		"STATUS_REFRESH_SECONDS=" + fmt.Sprint(addonsStatusRefreshSeconds), "APPLIED_COUNT_SECONDS=" + fmt.Sprint(addonsAppliedCountSeconds)}
	code, out := runScript(t, cmd)
	if code != 0 || !strings.Contains(out, "add-on set "+revision+" applied") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	data, _ := os.ReadFile(calls)
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// TestApplierCallsAWSLessWhenNothingChanged: each AWS CLI start costs about
// a second of CPU, and the applier runs every minute. A run that applied
// the set records it only when its revision changed (or
// addonsStatusRefreshSeconds after the last record), and counts the
// applied metric at most every addonsAppliedCountSeconds, which keeps one
// in each of the alarm's 5-minute periods.
func TestApplierCallsAWSLessWhenNothingChanged(t *testing.T) {
	if addonsAppliedCountSeconds >= 300 {
		t.Fatalf("the applied metric is counted every %ds, not within each 300 s period of its alarm", addonsAppliedCountSeconds)
	}
	state := t.TempDir()
	read, record, count := "s3 cp --only-show-errors s3://assets/"+AddonSetKey, "s3 cp --only-show-errors --content-type", "cloudwatch put-metric-data --namespace kubeha --metric-name "+AddonsAppliedMetric
	backdate := func(name string, seconds int) {
		then := time.Now().Add(-time.Duration(seconds) * time.Second)
		if err := os.Chtimes(filepath.Join(state, name), then, then); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		why      string
		revision string
		before   func()
		want     []string
	}{
		{"the first run", "r1", func() {}, []string{read, record, count}},
		{"the next run, nothing changed", "r1", func() {}, []string{read}},
		{"a new revision", "r2", func() {}, []string{read, record}},
		{"the count is due", "r2", func() { backdate("counted", addonsAppliedCountSeconds) }, []string{read, count}},
		{"the record is due", "r2", func() { backdate("recorded", addonsStatusRefreshSeconds) }, []string{read, record}},
	} {
		step.before()
		calls := runApplier(t, state, step.revision)
		if len(calls) != len(step.want) {
			t.Errorf("%s: AWS calls %q, want %q", step.why, calls, step.want)
			continue
		}
		for i, want := range step.want {
			if !strings.HasPrefix(calls[i], want) {
				t.Errorf("%s: AWS calls %q, want %q", step.why, calls, step.want)
				break
			}
		}
	}
}
