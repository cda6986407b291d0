package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// runSteps runs body in bash after sourcing bootstrap-steps.sh as a
// first-boot script does, with a fake aws command that records its calls
// and answers describe-auto-scaling-instances with where. It returns the
// exit code, the calls made and what the script logged.
func runSteps(t *testing.T, state, where, deadline, body string) (int, []string, string) {
	t.Helper()
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	fakeAWS := `#!/bin/sh
echo "$*" >>"` + calls + `"
case "$1 $2" in
  "autoscaling describe-auto-scaling-instances") printf '%s\n' "$WHERE" ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "aws"), []byte(fakeAWS), 0o755); err != nil {
		t.Fatal(err)
	}
	steps, err := scripts.ReadFile("scripts/bootstrap-steps.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap-steps.sh"), steps, 0o644); err != nil {
		t.Fatal(err)
	}
	script := "set -euo pipefail\nshopt -s inherit_errexit\nlog() { echo \"$*\" >&2; }\nimds() { echo i-0test; }\n. " +
		filepath.Join(dir, "bootstrap-steps.sh") + "\n" + body + "\n"
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "WHERE=" + where, "BOOTSTRAP_STATE_DIR=" + state,
		"BOOTSTRAP_DEADLINE_SECONDS=" + deadline, "BOOTSTRAP_BACKOFF_SECONDS=1", "LAUNCH_HOOK=" + LaunchHook,
		"BOOTSTRAP_METRIC_NAMESPACE=kubeha", "BOOTSTRAP_FAILED_METRIC=" + BootstrapFailedMetric, "BOOTSTRAP_METRIC_DIMENSIONS=Cluster=c1"}
	code, out := runScript(t, cmd)
	data, _ := os.ReadFile(calls)
	var made []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line != "" {
			made = append(made, strings.Join(strings.Fields(line)[:2], " "))
		}
	}
	return code, made, out
}

// scriptDir is a folder holding kubeha's named scripts and the given fake
// commands (name -> content), all executable, to run a script from with
// the folder first on PATH.
func scriptDir(t *testing.T, fakes map[string]string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		data, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			t.Fatal(err)
		}
		fakes[name] = string(data)
	}
	for name, content := range fakes {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runScript runs cmd and returns its exit code and combined output.
func runScript(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestLaunchHookOnlyWhereOneWaits: the hook is completed only when the
// instance waits on it; in no group or in service there is nothing to do,
// and any other answer (Pending, a failed lookup) is tried again.
func TestLaunchHookOnlyWhereOneWaits(t *testing.T) {
	for _, c := range []struct {
		where string
		code  int
		calls string
	}{
		{"None", 0, "autoscaling describe-auto-scaling-instances"},
		{"c1-etcd-a\tInService", 0, "autoscaling describe-auto-scaling-instances"},
		{"c1-etcd-a\tPending:Wait", 0, "autoscaling describe-auto-scaling-instances,autoscaling complete-lifecycle-action"},
		{"c1-etcd-a\tPending", 1, "autoscaling describe-auto-scaling-instances"},
		{"", 1, "autoscaling describe-auto-scaling-instances"},
	} {
		code, calls, log := runSteps(t, t.TempDir(), c.where, "1200", "launch_hook CONTINUE")
		if code != c.code || strings.Join(calls, ",") != c.calls {
			t.Errorf("where %q: exit %d, calls %v, want exit %d and %s\n%s", c.where, code, calls, c.code, c.calls, log)
		}
	}
}

// TestStepsRetryThenGiveUpOnce: a step is retried until it succeeds and
// not run again once done; past the deadline, a failing bootstrap counts
// itself, abandons its hook and marks itself unhealthy, once.
func TestStepsRetryThenGiveUpOnce(t *testing.T) {
	state := t.TempDir()
	counter := filepath.Join(t.TempDir(), "tries")
	flaky := `flaky() { echo x >>"` + counter + `"; [ "$(wc -l <"` + counter + `")" -ge 3 ]; }
step flaky flaky
step flaky flaky`
	code, _, log := runSteps(t, state, "None", "1200", flaky)
	tries, _ := os.ReadFile(counter)
	if code != 0 || strings.Count(string(tries), "x") != 3 || strings.Count(log, "step flaky failed") != 2 {
		t.Errorf("flaky step: exit %d after %d tries, want 0 after 3, each failure logged:\n%s", code, strings.Count(string(tries), "x"), log)
	}
	if _, err := os.Stat(filepath.Join(state, "flaky.done")); err != nil {
		t.Errorf("the step is not marked done: %v", err)
	}

	state = t.TempDir()
	for run := range 2 {
		code, calls, log := runSteps(t, state, "c1-etcd-a\tPending:Wait", "0", "step never false")
		want := "cloudwatch put-metric-data,autoscaling describe-auto-scaling-instances,autoscaling complete-lifecycle-action,autoscaling set-instance-health"
		if run == 1 {
			want = "" // given up already: nothing sent twice
		}
		if code == 0 || strings.Join(calls, ",") != want {
			t.Errorf("run %d past the deadline: exit %d, calls %v, want a failure and %q\n%s", run, code, calls, want, log)
		}
	}
}

// TestStepNeverSleepsPastTheDeadline: a failing step's backoff is cut to
// the time left, so that a node that cannot boot gives itself up at its
// deadline rather than a backoff after it.
func TestStepNeverSleepsPastTheDeadline(t *testing.T) {
	code, calls, log := runSteps(t, t.TempDir(), "c1-etcd-a\tPending:Wait", "2", "BOOTSTRAP_BACKOFF_SECONDS=60\nstep never false")
	pauses := regexp.MustCompile(`retrying in (\d+)s`).FindAllStringSubmatch(log, -1)
	if code == 0 || len(pauses) == 0 || !slices.Contains(calls, "autoscaling set-instance-health") {
		t.Fatalf("exit %d, calls %v, want a retry, then the node given up:\n%s", code, calls, log)
	}
	for _, p := range pauses {
		if n, _ := strconv.Atoi(p[1]); n < 1 || n > 2 {
			t.Errorf("a retry paused %ss with at most 2s to its deadline (backoff 5s):\n%s", p[1], log)
		}
	}
}
