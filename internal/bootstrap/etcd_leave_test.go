package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// leaveCase is what etcd-leave.sh sees on member etcd-a (instance i-0a in
// group g-a, leading): where its group takes it, the member that does not
// answer, if any, and the learner, if any. Auto Scaling says etcd-b's
// instance i-0b waits on the hook in group g-b.
type leaveCase struct {
	target, silent, learner string
	// follower: another member leads.
	follower bool
	// runs is how many times the timer runs it in a row; zero means once.
	runs int
}

// runEtcdLeave runs etcd-leave.sh with fakes and returns every call that
// acts (move-leader, systemctl stop, every aws call), one a line, and how
// many times it ran etcdctl.
func runEtcdLeave(t *testing.T, c leaveCase) (string, int, string, int) {
	t.Helper()
	dir := t.TempDir()
	calls, reads := filepath.Join(dir, "calls"), filepath.Join(dir, "etcdctl")
	url := func(m string) string { return "https://" + m + ".c1.internal:2379" }
	var members, health []string
	for _, m := range []string{"etcd-a", "etcd-b", "etcd-c"} {
		learner := "false"
		if m == c.learner {
			learner = "true"
		}
		members = append(members, "id-"+m+", started, "+m+", https://"+m+".c1.internal:2380, "+url(m)+", "+learner)
		if m != "etcd-a" {
			health = append(health, `{"endpoint":"`+url(m)+`","health":`+map[bool]string{true: "false", false: "true"}[m == c.silent]+`}`)
		}
	}
	leader := "3319814642761637952" // etcd-a's own ID
	if c.follower {
		leader = "1234"
	}
	unhealthy := "0"
	if c.silent != "" {
		unhealthy = "1"
	}
	fakes := map[string]string{
		"curl": `#!/bin/bash
case "$*" in
  *api/token*) echo token ;;
  *target-lifecycle-state*) echo ` + c.target + ` ;;
  *instance-id*) echo i-0a ;;
  *) exit 22 ;;
esac
`,
		"etcdctl": `#!/bin/bash
echo "$*" >>"` + reads + `"
case "$*" in
  *"endpoint health -w json"*) echo '[` + strings.Join(health, ",") + `]'; exit ` + unhealthy + ` ;;
  *"endpoint health"*) exit ` + unhealthy + ` ;;
  *"member list"*) printf '%s\n' '` + strings.Join(members, "' '") + `' ;;
  *"endpoint status -w fields"*) printf '%s\n' '"MemberID" : 3319814642761637952' '"Version" : "3.6.14"' '"Leader" : ` + leader + `' ;;
  *move-leader*) echo "etcdctl $*" >>"` + calls + `" ;;
  *) exit 1 ;;
esac
`,
		"systemctl": `#!/bin/bash
case "$1" in
  is-active) exit 0 ;;
  *) echo "systemctl $*" >>"` + calls + `" ;;
esac
`,
		"aws": `#!/bin/bash
echo "aws $*" >>"` + calls + `"
case "$1 $2" in
  "autoscaling describe-auto-scaling-instances") echo g-a ;;
  "autoscaling describe-auto-scaling-groups") printf 'g-b\ti-0b\n' ;;
esac
`,
	}
	bin := scriptDir(t, fakes, "etcd-leave.sh", "etcd-common.sh", "imds.sh", "due.sh")
	cmd := exec.Command("bash", filepath.Join(bin, "etcd-leave.sh"))
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "MEMBER_NAME=etcd-a", "MEMBER_SERVICE=etcd.service",
		"CLIENT_ENDPOINTS=" + url("etcd-a") + "," + url("etcd-b") + "," + url("etcd-c"), "MEMBER_CLIENT_URL=" + url("etcd-a"),
		"LOCAL_CLIENT_URL=https://127.0.0.1:2379", "LEAVE_HOOK=" + EtcdLeaveHook, "CLUSTER_TAG=kubernetes.io/cluster/c1", "MEMBER_TAG=" + EtcdMemberTag,
		"LEAVE_STATE_DIR=" + filepath.Join(dir, "state"), "SILENT_ASK_SECONDS=" + strconv.Itoa(etcdSilentAskSeconds)}
	code, out := runScript(t, cmd)
	for range c.runs - 1 {
		if code != 0 {
			break
		}
		again := exec.Command(cmd.Path, cmd.Args[1:]...)
		again.Env = cmd.Env
		var more string
		code, more = runScript(t, again)
		out += more
	}
	data, err := os.ReadFile(calls)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	etcdctl, _ := os.ReadFile(reads)
	return strings.TrimSpace(string(data)), code, out, strings.Count(string(etcdctl), "\n")
}

// TestEtcdLeaveKeepsQuorum: a member whose group takes its instance away
// goes only once the other members are healthy voters, handing leadership
// on if it leads and stopping etcd first; a member that no longer answers is let go
// by another at once; a cluster at rest costs no AWS call.
func TestEtcdLeaveKeepsQuorum(t *testing.T) {
	complete := func(group, instance string) string {
		return "aws autoscaling complete-lifecycle-action --lifecycle-hook-name " + EtcdLeaveHook + " --auto-scaling-group-name " + group +
			" --instance-id " + instance + " --lifecycle-action-result CONTINUE"
	}
	// Auto Scaling asked which instance of silent etcd-b's group leaves.
	askAboutB := "aws autoscaling describe-auto-scaling-groups --output text --filters Name=tag:kubernetes.io/cluster/c1,Values=owned Name=tag:" + EtcdMemberTag +
		",Values=etcd-b --query AutoScalingGroups[0].[AutoScalingGroupName, Instances[?LifecycleState=='Terminating:Wait'].InstanceId | [0]]"
	for name, c := range map[string]struct {
		leaveCase
		want, says string
	}{
		"leaving, the others healthy voters": {leaveCase{target: "Terminated"}, strings.Join([]string{
			"etcdctl --endpoints https://127.0.0.1:2379 move-leader id-etcd-b",
			"systemctl stop etcd.service",
			"aws autoscaling describe-auto-scaling-instances --instance-ids i-0a --query AutoScalingInstances[0].AutoScalingGroupName --output text",
			complete("g-a", "i-0a")}, "\n"), "handed leadership to id-etcd-b"},
		"leaving, a follower": {leaveCase{target: "Terminated", follower: true}, strings.Join([]string{
			"systemctl stop etcd.service",
			"aws autoscaling describe-auto-scaling-instances --instance-ids i-0a --query AutoScalingInstances[0].AutoScalingGroupName --output text",
			complete("g-a", "i-0a")}, "\n"), "may leave g-a"},
		"leaving, another member silent":    {leaveCase{target: "Terminated", silent: "etcd-c"}, "", "not every other member is healthy: staying"},
		"leaving, another member a learner": {leaveCase{target: "Terminated", learner: "etcd-b"}, "", "etcd-b is a learner still: staying"},
		"in service, a silent member leaving": {leaveCase{target: "InService", silent: "etcd-b"}, strings.Join([]string{
			askAboutB,
			complete("g-b", "i-0b")}, "\n"), "etcd-b does not answer and its instance i-0b is leaving g-b"},
		// Its successor boots for minutes: Auto Scaling is asked again only
		// after etcdSilentAskSeconds.
		"in service, a silent member, run again at once": {leaveCase{target: "InService", silent: "etcd-b", runs: 3}, strings.Join([]string{
			askAboutB,
			complete("g-b", "i-0b")}, "\n"), "etcd-b does not answer"},
		"in service, all healthy": {leaveCase{target: "InService"}, "", ""},
	} {
		t.Run(name, func(t *testing.T) {
			calls, code, out, etcdctl := runEtcdLeave(t, c.leaveCase)
			if code != 0 || calls != c.want || !strings.Contains(out, c.says) {
				t.Errorf("exit %d, calls:\n%s\nwant:\n%s\noutput (want %q):\n%s", code, calls, c.want, c.says, out)
			}
			// Every member runs it every few seconds: in steady state, one read.
			if c.target == "InService" && c.silent == "" && etcdctl != 1 {
				t.Errorf("etcdctl ran %d times in steady state, want 1", etcdctl)
			}
		})
	}
}
