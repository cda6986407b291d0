//go:build rehearsal

package rehearsal

import (
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/tools"
)

// TestRehearsal runs `kubeha rehearse --stack dev` and holds it to what
// kubeha claims: no acknowledged write lost, and every drill within what
// the stack's configuration allows (bounds.go): the API back, the Leases
// moved, a new etcd leader, and the node cut from etcd out of rotation with
// /readyz, and never with a TCP check.
func TestRehearsal(t *testing.T) {
	var faults []string
	for _, d := range drills {
		if d.name != upgradeDrill {
			faults = append(faults, d.name)
		}
	}
	report := rehearse(t, append(faults, neverDrill.name))
	// Nodes reached nothing but the doubles and the lab: every name they
	// looked up is answered by the VPC's DNS, the double's endpoints or
	// the lab's own zones and hosts.
	if len(report.OutsideNames) != 0 {
		t.Errorf("nodes looked up hosts outside the lab: %v", report.OutsideNames)
	}
	if report.BootSeconds <= 0 {
		t.Errorf("no boot-from-nothing time in the report")
	}
	// The control plane applied the stack's add-on set with real Helm,
	// took a changed version, reinstalled a deleted release, and never ran
	// two appliers at once (drillAddons fails the run otherwise; these
	// check that it measured).
	if a := report.Addons; a.Steps == 0 || a.AppliedSeconds <= 0 || a.BumpSeconds <= 0 || a.ReinstallSeconds <= 0 || a.Runs < 3 || a.Refused == 0 || a.Overlapping != 0 || len(a.Uninstalled) != 1 {
		t.Errorf("add-on drill: %+v", a)
	}
	// kube-bench ran the targets with automated checks (Run fails on one
	// that is not a known gap; CIS 1.10's controlplane target has none).
	if b := report.Benchmark; b.Passed["master"] == 0 || b.Passed["node"] == 0 || b.Passed["etcd"] == 0 {
		t.Errorf("kube-bench: passed %v, want checks of every target", b.Passed)
	}
	// The join token rotated as the README says: the old one refused, the
	// new one authenticating; drills a and f then join with it.
	if j := report.JoinToken; j.OldTokenStatus != http.StatusUnauthorized || !strings.HasPrefix(j.NewTokenUser, "system:bootstrap:") {
		t.Errorf("join token rotation: %+v", j)
	}
	// Kubelets serve certificates of the cluster CA that the API servers
	// verify; a node asking for another node's address is denied by the
	// approver, for another node's name by the API server itself.
	k := report.KubeletCertificates
	if k.Verified != 3 || k.Proxied != 3 || !strings.Contains(k.Denied["kubeha-rehearsal-other-address"], "is not an address of cp-a") ||
		!strings.Contains(k.Denied["kubeha-rehearsal-other-name"], "can only create a node CSR with CN=system:node:cp-a") {
		t.Errorf("kubelet certificates: %+v", k)
	}
	// A worker's own join token can do what kubeadm join does, and gets a
	// kubelet client certificate for its own instance's name only.
	if w := report.WorkerJoin; !w.Signed || w.OtherNode.Type != "Denied" || !strings.Contains(w.OtherNode.Message, "it is not for node ip-") ||
		!strings.HasPrefix(w.OwnNode, "system:node:ip-") || !slices.Contains(w.Groups, bootstrap.WorkerBootstrapGroup) {
		t.Errorf("worker join: %+v", w)
	}
	// A worker booted from its user-data joined with its own token, its
	// client certificate approved for its own name.
	if w := report.WorkerBoot; w.ClientCertificate != "CN=system:node:"+workerName(0)+",O=system:nodes" || w.Approved == "" || w.JoinedSeconds <= 0 {
		t.Errorf("worker boot: %+v", w)
	}
	// Workers in every zone are Ready on flannel; CoreDNS, and the probe
	// Deployment, which sets no spread of its own, run one pod per zone;
	// a client in each zone is answered through the Service by name.
	dp := report.DataPlane
	if dp.CNI != "flannel" || dp.ReadySeconds <= 0 || len(dp.Clients) != 3 {
		t.Errorf("data plane: %+v", dp)
	}
	for _, counts := range []map[string]int{dp.CoreDNSPerZone, dp.ProbePerZone} {
		if !onePerZone(counts) {
			t.Errorf("pods by zone before the drills: %v, want one in each of 3 zones", counts)
		}
	}
	// Every drill measured the Service from the clients it leaves alone
	// (drill u drains them with their workers).
	for _, d := range report.Drills {
		if d.Name == upgradeDrill {
			continue
		}
		if d.Name != neverDrill.name && (d.Service == nil || d.Service.Requests == 0 || len(d.Service.PodsAfter) == 0) {
			t.Errorf("drill %s: no Service traffic measured: %+v", d.Name, d.Service)
			continue
		}
		// Each drill but e (zone a still cut) began with the probe spread
		// one per zone, so that what it measured is its own damage.
		if d.Name != "e" && d.Name != neverDrill.name && !onePerZone(d.Service.PodsBefore) {
			t.Errorf("drill %s began with the probe's pods by zone %v, want one in each of 3 zones", d.Name, d.Service.PodsBefore)
		}
		// While an API server is gone, the other zones' kubelets keep
		// their Nodes Ready through the load balancer.
		if slices.Contains([]string{"a", "c", "k"}, d.Name) && len(d.Service.WorkersStayedReady) != 2 {
			t.Errorf("drill %s: workers Ready throughout %v, want worker-b and worker-c", d.Name, d.Service.WorkersStayedReady)
		}
	}
	// kube-proxy runs on every control-plane node and programs Services
	// (checkKubeProxy fails the run otherwise).
	if kp := report.KubeProxy; len(kp.Programmed) != 3 || len(kp.Ready) < 3 {
		t.Errorf("kube-proxy: %+v", kp)
	}
	// No pod on a control-plane node reaches the node's role; the API
	// server's service-account tokens verify with what the issuer's bucket
	// serves (checkWorkloadIdentity fails the run otherwise).
	if wi := report.WorkloadIdentity; wi.HopLimit != 1 || wi.NodeRole == "" || wi.PodRefused == "" || !wi.ServedKeys ||
		!strings.HasPrefix(wi.Subject, "system:serviceaccount:") || !strings.Contains(wi.Issuer, ".s3.") {
		t.Errorf("workload identity: %+v", wi)
	}
	raw, err := config.ReadStackFile(stackFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	s := fromConfig(cfg)
	b := s.bounds()
	// Each control-plane node's renewal timer ran kubeadm on the node and
	// reported about a year left (kubeadm's certificates, the kubelet's);
	// each etcd node's refresh about two (pulumi-tls's).
	if len(report.CertificateDaysLeft) != len(s.zones)+len(s.etcd.Members) {
		t.Errorf("certificate days left from %v, want every control-plane and etcd node", report.CertificateDaysLeft)
	}
	for name, left := range report.CertificateDaysLeft {
		want := 365.0
		if strings.HasPrefix(name, "etcd-") {
			want = 730
		}
		if left < want-2 || left > want+1 {
			t.Errorf("%s reported %.4f days left, want about %.0f", name, left, want)
		}
	}
	byName := map[string]Drill{}
	for _, d := range report.Drills {
		byName[d.Name] = d
	}
	if len(byName) != len(faults)+1 {
		t.Fatalf("%d drills reported, want %v and drill %s", len(byName), faults, neverDrill.name)
	}
	within := func(what string, took *float64, bound time.Duration) {
		t.Helper()
		if took == nil {
			t.Errorf("%s: not measured", what)
			return
		}
		lab.Within(t, what, time.Duration(*took*float64(time.Second)), bound)
	}
	for _, d := range report.Drills {
		// The probe kept sending through every drill: a stalled API shows
		// as failed requests, never as a probe that stopped asking.
		if d.ProbeSkippedTicks != 0 {
			t.Errorf("drill %s: the probe skipped %d ticks, all its slots busy", d.Name, d.ProbeSkippedTicks)
		}
		if d.Name == "d-tcp" || d.Name == "j" || d.Name == neverDrill.name || d.Name == upgradeDrill {
			continue
		}
		if d.RecoveryBoundSeconds == nil {
			t.Errorf("drill %s has no recovery bound", d.Name)
			continue
		}
		within("drill "+d.Name+" recovery", d.RecoverySeconds, time.Duration(*d.RecoveryBoundSeconds*float64(time.Second)))
	}
	for _, name := range []string{"a", "c", "d"} {
		within("drill "+name+": its node out of rotation", byName[name].RemovalSeconds, b.removal)
	}
	a := byName["a"]
	within("drill a scheduler Lease moved", a.SchedulerLeaseSeconds, b.leaseTakeover)
	within("drill a controller-manager Lease moved", a.ControllerManagerLeaseSecs, b.leaseTakeover)
	within("drill b new etcd leader", byName["b"].EtcdLeaderSeconds, b.etcdLeader)
	// A zone's worker lost with the zone (c): clients in the other zones
	// see errors until its pods leave the Service, after the node
	// lifecycle's grace period, and its pods run elsewhere after the
	// eviction toleration. Terminated through its group (k), it is drained
	// first: held to the same bounds, it must come well within them.
	// A cut that moves the controller-manager's Lease (its holder in zone
	// a, or stepping down while its API server waits on etcd-a) starts the
	// grace period again: the new holder's node lifecycle controller
	// counts it from when its controllers started.
	for _, name := range []string{"c", "k"} {
		d := byName[name]
		takeover := time.Duration(0)
		if d.ControllerManagerLeaseSecs != nil {
			takeover = time.Duration(*d.ControllerManagerLeaseSecs*float64(time.Second)) + b.controllersStart
		}
		if d.Service != nil {
			within("drill "+name+": the probe Service's error window", &d.Service.ErrorWindowSeconds, takeover+b.endpointRemoval)
		}
		within("drill "+name+": the probe's pods ready outside zone a", d.PodsRescheduledSeconds, takeover+b.rescheduled)
	}
	// Drill k's worker was drained by the control plane and let go through
	// its group's drain hook, not by the hook's timeout (the drill fails
	// then).
	within("drill k: worker-a drained and let go", byName["k"].DrainedSeconds, bootstrap.DrainHookTimeout)
	// Once zone a is back (e) or its worker replaced (k), the probe's
	// pods are spread one per zone again.
	for _, name := range []string{"e", "k"} {
		if s := byName[name].Service; s == nil || !onePerZone(s.PodsAfter) {
			t.Errorf("drill %s: the probe's pods by zone after it %v, want one in each of 3 zones", name, s)
		}
	}
	// Pods created one after another while cp-a, the scheduler's Lease
	// holder, is replaced (a) each ran (the drill fails on one that did
	// not) and waited for the scheduler no longer than its Lease took to
	// move.
	if s := byName["a"].Scheduling; s == nil || s.Pods < 3 {
		t.Errorf("drill a: pods scheduled during it %+v, want 3 or more", s)
	} else {
		within("drill a: the longest a pod waited to be scheduled", &s.LongestScheduledSeconds, b.leaseTakeover+recoverySlack)
	}
	// Each kind of node replaced from its user-data is back in service:
	// the control-plane node that created the cluster (a; the drill fails
	// unless it joined), an etcd member with its volume after a refused
	// attach (b), and a member on a blank volume, quorum held (g).
	for _, name := range []string{"a", "b", "g"} {
		if byName[name].ReplacementInServiceSeconds == nil {
			t.Errorf("drill %s: no replacement in service", name)
		}
	}
	// A node that can never boot gives itself up at its deadline, not
	// before (giveUpAndReplace checks the metric, hook and replacement).
	if i := byName[neverDrill.name]; i.GaveUpSeconds == nil || *i.GaveUpSeconds < s.bootstrapDeadline.Seconds() {
		t.Errorf("drill %s: gave up after %s, want at its %v deadline", neverDrill.name, secs(i.GaveUpSeconds), s.bootstrapDeadline)
	}
	if lost := byName["g"].QuorumLostSamples; lost == nil || *lost != 0 {
		t.Errorf("drill g: quorum lost in %v samples, want none", lost)
	}
	// The restore kept every write acknowledged before its snapshot (the
	// lost-writes check above), and took back some made after it.
	if h := byName["h"]; h.RecoverySeconds == nil || h.RewoundWrites == 0 {
		t.Errorf("drill h: recovery %s, %d writes rewound; want a restore that took back the writes after its snapshot", secs(h.RecoverySeconds), h.RewoundWrites)
	}
	// Every node renewed or re-read its certificates before they expired
	// (the drill checks the files and the counts), and the load balancer
	// never went longer without a success than taking a node out takes.
	j := byName["j"]
	if len(j.Renewals) != len(s.etcd.Members)+len(s.zones) {
		t.Errorf("drill j: renewals %v, want one count per etcd and control-plane node", j.Renewals)
	}
	within("drill j longest time without a successful request", &j.LongestGapSeconds, b.removal)
	readyz, tcp := byName["d"], byName["d-tcp"]
	if tcp.RecoverySeconds != nil || tcp.RemovalSeconds != nil || tcp.RecoveryBoundSeconds != nil {
		t.Errorf("drill d-tcp: recovery %s (bound %s), want none: a TCP check never takes out a node cut from etcd",
			secs(tcp.RecoverySeconds), secs(tcp.RecoveryBoundSeconds))
	}
	if readyz.ErrorRate >= tcp.ErrorRate {
		t.Errorf("drill d: error rate with /readyz %.1f%%, with TCP %.1f%%; want /readyz lower", 100*readyz.ErrorRate, 100*tcp.ErrorRate)
	}
}

// TestRehearsalUpgrade runs drill u alone: `kubeha rehearse --stack dev
// --drills u`. It replaces all nine nodes one at a time, 13 to 80 minutes
// on two cores by how busy they are, so it has its own target (make
// rehearsal-upgrade) and is not part of make test, whose CI stage stops at
// 90 minutes.
func TestRehearsalUpgrade(t *testing.T) {
	report := rehearse(t, []string{upgradeDrill})
	if len(report.Drills) != 1 || report.Drills[0].Name != upgradeDrill {
		t.Fatalf("drills reported: %d, want drill %s alone", len(report.Drills), upgradeDrill)
	}
	checkUpgrade(t, report.Drills[0])
}

// rehearse runs the named drills on the dev stack and checks what every
// run must hold: no acknowledged write lost, the stack's release recorded
// at the end, and nothing of the lab left behind.
func rehearse(t *testing.T, names []string) *Report {
	t.Helper()
	if why := Available(); why != "" {
		tools.Unavailable(t, "the rehearsal "+why)
	}
	if err := tools.Missing(lab.NodeBinaries...); err != nil {
		tools.Unavailable(t, err.Error())
	}
	// The log streams too (go test -v), for a run that takes half an hour.
	var log strings.Builder
	report, err := Run(context.Background(), Options{Stack: "dev", StackFile: stackFile, Drills: names,
		WorkDir: filepath.Join(t.TempDir(), "rehearsal"), Log: io.MultiWriter(&log, os.Stderr)})
	if report != nil {
		var table strings.Builder
		_ = report.WriteTable(&table)
		t.Logf("rehearsal report:\n%s", table.String())
	}
	if err != nil {
		t.Fatalf("rehearsal failed: %v\n%s", err, log.String())
	}
	if report.LostWrites != 0 || report.Writes == 0 {
		t.Errorf("%d of %d acknowledged writes lost", report.LostWrites, report.Writes)
	}
	// At the end (after drill u, once upgraded), the cluster records the
	// dev stack's release where `pulumi up` reads it before a change.
	if report.KubernetesVersion != bootstrap.PinnedKubernetesVersion {
		t.Errorf("the control plane records Kubernetes %q, want the dev stack's %s", report.KubernetesVersion, bootstrap.PinnedKubernetesVersion)
	}
	// Run has returned: nothing of the lab may be left.
	namespaces, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(namespaces), labPrefix+"-") {
		t.Errorf("namespaces left behind:\n%s", namespaces)
	}
	if _, err := os.Stat("/sys/class/net/" + labPrefix + "-m"); err == nil {
		t.Error("the machine's link to the lab is still there")
	}
	return report
}

const stackFile = "../../stacks/Pulumi.dev.yaml"

// onePerZone says counts hold one pod in each of 3 zones.
func onePerZone(counts map[string]int) bool {
	return len(counts) == 3 && !slices.ContainsFunc(slices.Collect(maps.Values(counts)), func(n int) bool { return n != 1 })
}

// checkUpgrade holds drill u to the terms: the cluster, created
// at the Kubernetes and etcd releases before the dev stack's, upgraded to
// them with every node replaced in order, etcd members first, then the
// control plane, and the version-skew policy held in every sample while
// API servers of both releases served.
func checkUpgrade(t *testing.T, d Drill) {
	t.Helper()
	u := d.Upgrade
	if u == nil {
		t.Errorf("drill %s reported no upgrade", upgradeDrill)
		return
	}
	previous, _ := previousRelease(bootstrap.PinnedKubernetesVersion)
	if u.From != previous || u.To != bootstrap.PinnedKubernetesVersion {
		t.Errorf("upgraded from %s to %s, want %s to %s", u.From, u.To, previous, bootstrap.PinnedKubernetesVersion)
	}
	previousEtcdVersion, _ := previousEtcd(bootstrap.EtcdVersion)
	if u.EtcdFrom != previousEtcdVersion || u.EtcdTo != bootstrap.EtcdVersion {
		t.Errorf("etcd rolled from %s to %s, want %s to %s", u.EtcdFrom, u.EtcdTo, previousEtcdVersion, bootstrap.EtcdVersion)
	}
	var order []string
	etcdZones := map[string]bool{}
	for i, n := range u.Nodes {
		if n.EtcdMember != (i < 3) {
			t.Errorf("replacement %d is %s (etcd member: %v): want the 3 etcd members first, one per zone", i+1, n.Name, n.EtcdMember)
		}
		if n.EtcdMember {
			etcdZones[n.Zone] = true
			continue
		}
		order = append(order, n.Name)
	}
	if want := []string{"cp-a", "cp-b", "cp-c", "worker-a", "worker-b", "worker-c"}; len(etcdZones) != 3 || !slices.Equal(order, want) || !u.StoppedAndResumed {
		t.Errorf("replaced etcd members in zones %v, then %v; stopped after cp-a and resumed: %v; want 3 zones, %v, and resumed", slices.Sorted(maps.Keys(etcdZones)), order, u.StoppedAndResumed, want)
	}
	mixed := previous + "," + bootstrap.PinnedKubernetesVersion
	if u.SkewSamples < 60 || len(u.SkewViolations) != 0 || !slices.ContainsFunc(u.Versions, func(v string) bool { return strings.HasPrefix(v, mixed+";") }) {
		t.Errorf("skew: %d samples, violations %v, versions seen %v; want a minute's samples or more, none broken, API servers of both releases seen", u.SkewSamples, u.SkewViolations, u.Versions)
	}
	if len(u.LongestUnheldLeaseSeconds) != len(lab.LeaderElected) {
		t.Errorf("Leases watched: %v, want %v", u.LongestUnheldLeaseSeconds, lab.LeaderElected)
	}
	if !u.StoppedAndResumed || u.PulumiUp.Seconds <= 0 {
		t.Errorf("stopped and resumed: %v; pulumi up measured: %+v", u.StoppedAndResumed, u.PulumiUp)
	}
	if d.Requests == 0 || d.ErrorRate >= 0.01 || d.LostWrites != 0 {
		t.Errorf("the API through the load balancer during the upgrade: %d of %d requests failed, %d writes lost; want under 1%% and none", d.Failures, d.Requests, d.LostWrites)
	}
}
