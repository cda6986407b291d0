package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// runWorkerDrain runs control-plane-worker-drain.sh on node host of a
// cluster of cp-a, cp-b (Ready) and workers worker-a (i-0a) and worker-b
// (i-0b), Auto Scaling saying i-0a waits on its termination hook in group
// g-a, i-0c (a worker with no Node) on its own in g-c, and i-0n is
// launching in g-b. drainExit is what `kubectl drain` exits with. It
// returns every kubectl drain and aws call, one a line, and the joining
// workers file, or "none" if there is none.
func runWorkerDrain(t *testing.T, host string, drainExit int) (calls string, code int, out, joining string) {
	t.Helper()
	dir := t.TempDir()
	callsFile, joiningFile := filepath.Join(dir, "calls"), filepath.Join(dir, "state", "joining-workers")
	groups := `{"AutoScalingGroups":[` +
		`{"AutoScalingGroupName":"g-a","Instances":[{"InstanceId":"i-0a","LifecycleState":"Terminating:Wait"}]},` +
		`{"AutoScalingGroupName":"g-b","Instances":[{"InstanceId":"i-0b","LifecycleState":"InService"},{"InstanceId":"i-0n","LifecycleState":"Pending:Wait"}]},` +
		`{"AutoScalingGroupName":"g-c","Instances":[{"InstanceId":"i-0c","LifecycleState":"Terminating:Wait"}]}]}`
	node := func(name, provider string, controlPlane bool) string {
		labels := `{}`
		if controlPlane {
			labels = `{"` + ControlPlaneLabel + `":""}`
		}
		return `{"metadata":{"name":"` + name + `","labels":` + labels + `},"spec":{"providerID":"` + provider + `"},` +
			`"status":{"conditions":[{"type":"Ready","status":"True"}]}}`
	}
	nodes := strings.Join([]string{node("cp-b", "aws:///eu-west-1b/i-0cb", true), node("cp-a", "aws:///eu-west-1a/i-0ca", true),
		node("worker-a", "aws:///eu-west-1a/i-0a", false), node("worker-b", "aws:///eu-west-1b/i-0b", false)}, ",")
	fakes := map[string]string{
		"hostname": "#!/bin/sh\necho " + host + "\n",
		"kubectl": `#!/bin/bash
case "$*" in
  *" get nodes -o json") echo '{"items":[` + nodes + `]}' ;;
  *" drain "*) args="$*"; echo "kubectl drain ${args#* drain }" >>"` + callsFile + `"; exit ` + strconv.Itoa(drainExit) + ` ;;
  *) exit 1 ;;
esac
`,
		"aws": `#!/bin/bash
echo "aws $*" >>"` + callsFile + `"
case "$1 $2" in
  "autoscaling describe-auto-scaling-groups") echo '` + groups + `' ;;
esac
`,
	}
	bin := scriptDir(t, fakes, "control-plane-worker-drain.sh", "node-common.sh", "credentials.sh")
	cmd := exec.Command("bash", filepath.Join(bin, "control-plane-worker-drain.sh"))
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "ROLE=control-plane", "ZONE=eu-west-1a", "CONTROL_PLANE_LABEL=" + ControlPlaneLabel,
		"DRAIN_HOOK=" + DrainHook, "DRAIN_TIMEOUT_SECONDS=180", "ADMIN_KUBECONFIG=/dev/null", "LOCAL_API_URL=https://127.0.0.1:6443", "API_ENDPOINT=api.c1.example",
		"CLUSTER_NAME=c1", "POOL_TAG=" + PoolTag, "JOINING_WORKERS_FILE=" + joiningFile}
	code, out = runScript(t, cmd)
	data, err := os.ReadFile(callsFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	joining = "none"
	if j, err := os.ReadFile(joiningFile); err == nil {
		joining = string(j)
	}
	return strings.TrimSpace(string(data)), code, out, joining
}

// TestWorkerDrainDrainsWhatWaitsOnItsHook: the first Ready control-plane
// node by name asks Auto Scaling once for the cluster's worker groups,
// drains the worker waiting on its termination hook within its budgets
// (bare pods too), and only then completes the hook; an instance with no
// Node is not drained. It notes the workers launching for the approver.
// A drain not done leaves the hook waiting, and other control-plane nodes
// leave it all alone.
func TestWorkerDrainDrainsWhatWaitsOnItsHook(t *testing.T) {
	calls, code, out, joining := runWorkerDrain(t, "cp-a", 0)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if joining != "i-0n\n" {
		t.Errorf("joining workers %q, want i-0n, the one launching", joining)
	}
	want := strings.Join([]string{
		"aws autoscaling describe-auto-scaling-groups --output json --filters Name=tag:kubernetes.io/cluster/c1,Values=owned Name=tag-key,Values=" + PoolTag,
		"kubectl drain worker-a --ignore-daemonsets --delete-emptydir-data --force --timeout=180s",
		"aws autoscaling complete-lifecycle-action --lifecycle-hook-name " + DrainHook + " --auto-scaling-group-name g-a --instance-id i-0a --lifecycle-action-result CONTINUE",
	}, "\n")
	if calls != want {
		t.Errorf("calls:\n%s\nwant:\n%s\n%s", calls, want, out)
	}
	t.Logf("MEASURED: %s", strings.ReplaceAll(calls, "\n", " | "))

	calls, code, out, _ = runWorkerDrain(t, "cp-a", 1)
	if code != 0 || strings.Contains(calls, "complete-lifecycle-action") || !strings.Contains(out, "not drained yet") {
		t.Errorf("a drain not done: exit %d, calls:\n%s\n%s", code, calls, out)
	}
	calls, code, out, joining = runWorkerDrain(t, "cp-b", 0)
	if code != 0 || calls != "" || joining != "none" {
		t.Errorf("cp-b, not the first by name: exit %d, joining %q, calls:\n%s\n%s", code, joining, calls, out)
	}
}
