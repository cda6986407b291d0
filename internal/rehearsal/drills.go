package rehearsal

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubeha/kubeha/internal/awsdouble"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/netlab"
)

// drill is one failure: fault breaks something, and the drill measures the
// cluster until it serves again, then heals it and waits until it is whole.
type drill struct {
	name, description string
	run               func(ctx context.Context, c *cluster, p *probe) (Drill, error)
}

// drills run in this order: zone a comes back (e) right after it is cut
// (c), so that every drill starts from a whole cluster; k takes worker-a
// once e has put a probe pod back on it.
var drills = []drill{
	{upgradeDrill, "upgrade the cluster, created at the release before the stack's, to the stack's: pulumi up, then kubeha upgrade's steps replace every node zone by zone, workers drained first, while the write probe runs", upgradeCluster},
	{"a", "kill cp-a, whose first boot created the cluster and which holds the scheduler and controller-manager Leases, while pods are being scheduled: its group's new instance finds the cluster in etcd and joins", whileScheduling(killLeaseHolder)},
	{"b", "kill the etcd leader; its replacement boots while EC2 throttles, Route 53 is slow and EC2 refuses its volume for a minute", killEtcdLeader},
	{"c", "cut zone a: etcd-a, cp-a and worker-a lose their network at once", cutZone},
	{"e", "bring zone a back: its members rejoin, its node re-enters rotation, and the README's step puts a probe pod back in zone a", restoreZone},
	{"d", "partition cp-b from etcd only, its port 6443 still open; load balancer checks HTTPS /readyz", partitionFromEtcd(healthCheckReadyz)},
	{"d-tcp", "the same partition; load balancer checks that TCP connects (kops, Typhoon)", partitionFromEtcd(healthCheckTCP)},
	{"k", "terminate worker-a through its group, as a scale-in does: its drain hook holds it until the control plane drained it, its pods run again in zones b and c, and its group's replacement joins", loseWorker},
	{"g", "an etcd follower loses its instance and data volume while S3 holds no snapshot: it rejoins as a learner, is promoted, quorum held", loseEtcdVolume},
	{"h", "every etcd member's data lost: the README's restore runbook, scripted, brings the cluster back from the S3 snapshot into fresh members", restoreFromSnapshot},
	{"j", "every certificate made to last minutes: kubeadm's renewed by each control-plane node's timer, etcd's re-issued into the secrets and re-read by every node, the cluster serving past their expiry", renewShortCertificates},
}

// selectDrills is the drills named, in their usual order, drill i (which
// runs alongside) among them; all of them if none is named. Drills c and
// e go together: e heals the zone c cuts.
func selectDrills(names []string) ([]drill, error) {
	all := append(slices.Clone(drills), neverDrill)
	if len(names) == 0 {
		return all, nil
	}
	var selected []drill
	for _, name := range names {
		if !slices.ContainsFunc(all, func(d drill) bool { return d.name == name }) {
			var known []string
			for _, d := range all {
				known = append(known, d.name)
			}
			return nil, fmt.Errorf("drills: no drill %q; the drills are %s", name, strings.Join(known, ", "))
		}
	}
	if slices.Contains(names, "c") != slices.Contains(names, "e") {
		return nil, fmt.Errorf("drills %s: c and e go together, e heals the zone c cuts", strings.Join(names, ","))
	}
	for _, d := range all {
		if slices.Contains(names, d.name) {
			selected = append(selected, d)
		}
	}
	return selected, nil
}

// upgradeDrill is drill u's name: it runs first, on a cluster created at
// the release before the stack's.
const upgradeDrill = "u"

// recoveryLimit is how long a drill waits for the cluster before giving
// up; what it must take is the drill's bound. An API server restarted by
// drill j's renewals was still starting (caches, RBAC's bootstrap roles)
// 3 minutes later, while nine nodes shared the lab machine's two CPUs.
const recoveryLimit = 5 * time.Minute

// watch follows what a fault may move: the Leases and the etcd leader.
type watch struct {
	scheduler, controllerManager string // holders before the fault
	controllerManagerIdentity    string
	etcdLeader                   int
	// lostNodes and lostMembers are what the fault took away; cut says
	// they vanished without closing their connections.
	lostNodes   map[string]bool
	lostMembers map[int]bool
	cut         bool
}

// settle waits until the cluster is whole, so that a drill starts from
// it even if it degraded again after the previous drill's heal, and says
// where the Leases and etcd leader are.
func (c *cluster) settle() (watch, error) {
	w := watch{lostNodes: map[string]bool{}, lostMembers: map[int]bool{}}
	took, err := c.waitFor("the cluster whole before the drill", recoveryLimit, c.fullyHealthy)
	if err != nil {
		return w, err
	}
	if took > time.Second {
		c.logf("the cluster was whole again only after %.1fs more", took.Seconds())
	}
	w.etcdLeader = c.etcdLeader()
	w.scheduler, _ = c.leaseHolder("kube-scheduler")
	if l, err := c.lbAdmin.Lease("kube-controller-manager"); err == nil {
		w.controllerManager, w.controllerManagerIdentity = l.Holder, l.Identity
	}
	return w, nil
}

// controllerManagerTakeover records, when the drill did not already, a
// controller-manager that took the Lease after start though the holder's
// node lived: the holder stepped down when its API server's etcd requests
// waited on a cut member (up to lab.EtcdClientFailover) past its renew
// deadline. The new holder's node lifecycle controller counts a silent
// node's grace period from when it took over.
func (c *cluster) controllerManagerTakeover(d *Drill, w watch, start time.Time) {
	if d.ControllerManagerLeaseSecs != nil {
		return
	}
	l, err := c.nodeAPI(w.lostNodes).Lease("kube-controller-manager")
	if err != nil || l.Identity == w.controllerManagerIdentity || l.Acquired.Before(start) {
		return
	}
	d.ControllerManagerLeaseSecs = seconds(l.Acquired.Sub(start))
	d.note(fmt.Sprintf("the kube-controller-manager on %s took the Lease %.1fs in, from the one on %s, whose node lived", l.Holder, *d.ControllerManagerLeaseSecs, w.controllerManager))
}

// notReadyNote says when the Node named went NotReady, if it did after
// start.
func (c *cluster) notReadyNote(name string, start time.Time) string {
	nodes, err := c.listNodes()
	if err != nil {
		return ""
	}
	for _, n := range nodes.Items {
		if r, _ := ready(n.Status.Conditions); n.Metadata.Name == name && r.Status != "True" && r.LastTransitionTime.After(start) {
			return fmt.Sprintf("Node %s NotReady %.0fs in", name, r.LastTransitionTime.Sub(start).Seconds())
		}
	}
	return ""
}

// recoveryBound is what the configuration allows the cluster to serve
// again after the fault w describes: the lost Leases moved, a lost etcd
// leader replaced, lost nodes out of rotation, and the API servers' etcd
// clients off a cut member. Until a node is out, requests the load
// balancer sends it fail; while etcd has no leader, writes wait; requests
// an API server sends a cut member wait until its keepalive gives up.
func (w watch) recoveryBound(b bounds) time.Duration {
	bound := time.Duration(0)
	if w.lostNodes[w.scheduler] || w.lostNodes[w.controllerManager] {
		bound = b.leaseTakeover
	}
	if w.lostMembers[w.etcdLeader] {
		bound = max(bound, b.etcdLeader)
	}
	if len(w.lostNodes) > 0 {
		bound = max(bound, b.removal)
	}
	if len(w.lostMembers) > 0 && w.cut {
		bound = max(bound, lab.EtcdClientFailover)
	}
	return bound + recoverySlack
}

// measure applies fault and measures until the cluster serves again
// without what was lost: lost nodes out of the load balancer's rotation,
// Leases held by live nodes, an etcd leader among live members, and every
// request through the load balancer succeeding. Each is polled on its
// own, and asked of live nodes only, so that a call hanging on a dead node
// delays no measurement.
func measure(ctx context.Context, c *cluster, p *probe, w watch, fault func() error) (Drill, error) {
	d := Drill{RecoveryBoundSeconds: seconds(w.recoveryBound(c.stack.bounds()))}
	live := c.nodeAPI(w.lostNodes)
	start := time.Now()
	if err := fault(); err != nil {
		return d, err
	}
	var polls sync.WaitGroup
	var gaveUp atomic.Bool
	poll := func(into **float64, done func() bool) {
		polls.Add(1)
		go func() {
			defer polls.Done()
			for ctx.Err() == nil && time.Since(start) < recoveryLimit {
				if done() {
					*into = seconds(time.Since(start))
					return
				}
				time.Sleep(lab.PollInterval)
			}
			gaveUp.Store(true)
		}()
	}
	movedOff := func(lease string) func() bool {
		return func() bool {
			l, err := live.Lease(lease)
			return err == nil && l.Holder != "" && !w.lostNodes[l.Holder]
		}
	}
	if w.lostNodes[w.scheduler] {
		poll(&d.SchedulerLeaseSeconds, movedOff("kube-scheduler"))
	}
	if w.lostNodes[w.controllerManager] {
		poll(&d.ControllerManagerLeaseSecs, movedOff("kube-controller-manager"))
	}
	if len(w.lostNodes) > 0 {
		poll(&d.RemovalSeconds, func() bool { return c.outOfRotation(w.lostNodes) })
	}
	if w.lostMembers[w.etcdLeader] {
		poll(&d.EtcdLeaderSeconds, func() bool { return c.etcdLeaderAmong(w.lostMembers) >= 0 })
	}
	polls.Wait()
	d.RemovalSeconds = c.removedAfter(w.lostNodes, start, d.RemovalSeconds)
	for !p.serving(start, servingSpan) || gaveUp.Load() {
		if err := ctx.Err(); err != nil {
			return d, err
		}
		if time.Since(start) > recoveryLimit {
			return d, fmt.Errorf("the cluster did not serve again within %s", recoveryLimit)
		}
		time.Sleep(lab.PollInterval)
	}
	// Recovered: what was lost came back, and every request started since
	// succeeded.
	recovered := p.servingSince(start).Sub(start)
	for _, t := range []*float64{d.SchedulerLeaseSeconds, d.ControllerManagerLeaseSecs, d.EtcdLeaderSeconds, d.RemovalSeconds} {
		if t != nil {
			recovered = max(recovered, time.Duration(*t*float64(time.Second)))
		}
	}
	d.RecoverySeconds = seconds(recovered)
	p.record(&d, start, time.Now())
	for n := range w.lostNodes {
		d.note(c.removalNote(n, start, d.RemovalSeconds))
	}
	return d, nil
}

// note adds to the drill's notes.
func (d *Drill) note(text string) {
	if text == "" {
		return
	}
	if d.Notes != "" {
		d.Notes += "; "
	}
	d.Notes += text
}

func seconds(d time.Duration) *float64 { s := d.Seconds(); return &s }

// outOfRotation says the load balancer sends none of these nodes traffic.
func (c *cluster) outOfRotation(nodes map[string]bool) bool {
	up, err := c.backendUp()
	if err != nil {
		return false
	}
	for n := range nodes {
		if up[n] {
			return false
		}
	}
	return true
}

// serving says every request started since since and finished in the
// last span succeeded, and there were at least three.
func (p *probe) serving(since time.Time, span time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.results {
		if r.started.Before(since) || time.Since(r.at) > span {
			continue
		}
		if !r.ok {
			return false
		}
		n++
	}
	return n >= 3
}

// servingSince is when the last request since since that failed started,
// or since if none did: every request started after it succeeded.
func (p *probe) servingSince(since time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	last := since
	for _, r := range p.results {
		if !r.ok && r.started.After(last) {
			last = r.started
		}
	}
	return last
}

// record fills d's traffic numbers from the probe's results between from
// and to.
func (p *probe) record(d *Drill, from, to time.Time) {
	w := p.window(from, to)
	d.Requests, d.Failures, d.LongestGapSeconds = w.requests, w.failures, w.longestGap.Seconds()
	if d.Requests > 0 {
		d.ErrorRate = float64(d.Failures) / float64(d.Requests)
	}
	d.ErrorWindowSeconds = w.lastFailure.Seconds()
	d.LatencySeconds = map[string]float64{"p50": w.latency[0].Seconds(), "p90": w.latency[1].Seconds(), "p99": w.latency[2].Seconds()}
	d.ProbeSkippedTicks = w.skipped
	if w.failures > 0 {
		d.note("failed requests: " + w.causeList())
		// Where the longest gap fell, for a gap held to a bound.
		failed := p.failureTimeline(w.longestGapFrom, w.longestGapFrom.Add(w.longestGap))
		inIt := "none failed in it, the requests were slow"
		if len(failed) > 0 {
			inIt = "failed in it: " + strings.Join(failed[:min(len(failed), 12)], "; ")
		}
		d.note(fmt.Sprintf("the longest time without a success, %.1fs, began %s (%.0fs in); %s", w.longestGap.Seconds(),
			w.longestGapFrom.Format(time.TimeOnly), w.longestGapFrom.Sub(from).Seconds(), inIt))
	}
}

// heal waits until the cluster is whole again and checks no write was lost.
func heal(c *cluster, p *probe, d *Drill) error {
	if _, err := c.waitFor("the cluster whole again", recoveryLimit, c.fullyHealthy); err != nil {
		return err
	}
	lost, err := p.lostWrites()
	if err != nil {
		return err
	}
	d.LostWrites = len(lost)
	if len(lost) > 0 {
		return fmt.Errorf("%d acknowledged writes lost, e.g. %s", len(lost), lost[0])
	}
	return nil
}

func (c *cluster) nodeNamed(name string) *lab.NodeGroup { return groupNamed(c.nodes, name) }

// groupNamed is the group of that name among groups, or nil.
func groupNamed(groups []*lab.NodeGroup, name string) *lab.NodeGroup {
	if i := slices.IndexFunc(groups, func(g *lab.NodeGroup) bool { return g.Name == name }); i >= 0 {
		return groups[i]
	}
	return nil
}

func killLeaseHolder(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	// cp-a, whose first boot created the cluster, holds both Leases as a
	// fresh cluster leaves them; an upgrade scatters them.
	victim := c.nodes[0]
	if err := c.gatherLeases(victim); err != nil {
		return Drill{}, err
	}
	w, err := c.settle()
	if err != nil {
		return Drill{}, err
	}
	if w.scheduler != victim.Name || w.controllerManager != victim.Name {
		return Drill{}, fmt.Errorf("the Leases moved off %s before the drill: scheduler on %q, controller-manager on %q", victim.Name, w.scheduler, w.controllerManager)
	}
	w.lostNodes[victim.Name] = true
	d, err := measure(ctx, c, p, w, func() error {
		victim.Kill()
		return nil
	})
	if err != nil {
		return d, err
	}
	// Its group launches a replacement, which finds the cluster in etcd
	// and joins it.
	if err := c.replaceInstance(&d, victim); err != nil {
		return d, err
	}
	log := victim.BootstrapLog()
	// control-plane-bootstrap.sh's own lines (kubeadm join prints "kubeadm
	// init" in its advice).
	if !strings.Contains(log, "etcd holds the cluster: joining") || strings.Contains(log, "etcd holds no cluster: creating it") {
		return d, fmt.Errorf("%s's replacement did not join the cluster it found in etcd:\n%s", victim.Name, log)
	}
	d.note(victim.Name + "'s replacement found kubeadm-config in etcd and joined")
	return d, heal(c, p, &d)
}

// gatherLeases puts the scheduler's and controller-manager's Leases on g's
// node, where a cluster's first boot puts them and drill a expects them
// (an upgrade's replacements scatter them), and waits until the other
// nodes' two components run again. The other nodes' two
// components stop (their static pod manifests set aside) until g's hold
// both, then start again.
func (c *cluster) gatherLeases(g *lab.NodeGroup) error {
	held := func() error {
		for _, name := range lab.LeaderElected {
			if holder, err := c.leaseHolder(name); err != nil || holder != g.Name {
				return fmt.Errorf("%s is held by %q (%v)", name, holder, err)
			}
		}
		return nil
	}
	if held() == nil {
		return nil
	}
	var others []*lab.NodeGroup
	for _, n := range c.nodes {
		if n != g {
			others = append(others, n)
		}
	}
	move := func(back bool) error {
		for _, n := range others {
			for _, component := range lab.LeaderElected {
				src, dst := bootstrap.StaticPodDir+"/"+component+".yaml", "/etc/kubernetes/"+component+".yaml.held"
				if back {
					src, dst = dst, src
				}
				if _, err := n.Instance.Exec("mv", src, dst); err != nil {
					return fmt.Errorf("%s: %w", n.Name, err)
				}
			}
		}
		return nil
	}
	if err := move(false); err != nil {
		return err
	}
	if _, err := c.waitFor("both Leases on "+g.Name, recoveryLimit, held); err != nil {
		return cmp.Or(move(true), err)
	}
	if err := move(true); err != nil {
		return err
	}
	// The others must run again, candidates for the Leases, before a
	// drill takes g's node: one they were still starting would count in
	// its takeover time.
	_, err := c.waitFor("the other nodes' schedulers and controller-managers healthy", recoveryLimit, func() error {
		for _, n := range others {
			for _, port := range []int{bootstrap.SchedulerPort, bootstrap.ControllerManagerPort} {
				if out, err := n.Instance.Exec("curl", "-fsk", "--max-time", "2", fmt.Sprintf("https://127.0.0.1:%d/healthz", port)); err != nil {
					return fmt.Errorf("%s port %d: %v %s", n.Name, port, err, out)
				}
			}
		}
		return nil
	})
	return err
}

func killEtcdLeader(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	w, err := c.settle()
	if err != nil {
		return Drill{}, err
	}
	if w.etcdLeader < 0 {
		return Drill{}, fmt.Errorf("no etcd leader to kill")
	}
	w.lostMembers[w.etcdLeader] = true
	victim := c.members[w.etcdLeader]
	d, err := measure(ctx, c, p, w, func() error {
		victim.Kill()
		return nil
	})
	if err != nil {
		return d, err
	}
	// The replacement boots against a harder AWS: EC2 throttles its first
	// calls, Route 53 answers slowly, the volume is still attached to the
	// lost instance until EC2 finishes detaching it, and then EC2 refuses
	// the attach for a while. Its first boot retries until it can, out of
	// service meanwhile.
	since := time.Now()
	c.cloud.Fault(awsdouble.EC2, "*", awsdouble.Fault{Throttle: 3})
	c.cloud.Fault(awsdouble.Route53, "ChangeResourceRecordSets", awsdouble.Fault{Delay: 3 * time.Second})
	defer c.cloud.Fault(awsdouble.Route53, "ChangeResourceRecordSets", awsdouble.Fault{})
	allowed := c.refuseAttach()
	if err := c.replaceInstance(&d, victim); err != nil {
		return d, err
	}
	<-allowed
	if log := victim.BootstrapLog(); !strings.Contains(log, "step volume failed") {
		return d, fmt.Errorf("%s's first boot never met the refused attach:\n%s", victim.Name, log)
	}
	if *d.ReplacementInServiceSeconds < attachRefusal.Seconds() {
		return d, fmt.Errorf("%s was in service %.0fs after launch, while its volume was refused for %s", victim.Name, *d.ReplacementInServiceSeconds, attachRefusal)
	}
	if err := heal(c, p, &d); err != nil {
		return d, err
	}
	throttled := 0
	for _, call := range c.cloud.Calls() {
		if call.Service == awsdouble.EC2 && call.Status == http.StatusServiceUnavailable && call.Time.After(since) {
			throttled++
		}
	}
	d.note(fmt.Sprintf("%s's replacement rejoined through %d throttled EC2 calls, a 3 s Route 53 and %s of refused attaches, in service %.0fs after launch",
		victim.Name, throttled, attachRefusal, *d.ReplacementInServiceSeconds))
	if throttled != 3 {
		return d, fmt.Errorf("the replacement met %d throttled EC2 calls, want 3", throttled)
	}
	return d, nil
}

// zoneA is the first zone's etcd member and control-plane node.
// zoneA are the hosts of zone a: its etcd member, control-plane node and
// worker.
func (c *cluster) zoneA() []*netlab.Host {
	return []*netlab.Host{c.members[0].Host, c.nodes[0].Host, c.workers[0].Host}
}

func cutZone(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	w, err := c.settle()
	if err != nil {
		return Drill{}, err
	}
	w.lostNodes[c.nodes[0].Name], w.lostMembers[0], w.cut = true, true, true
	d, err := measure(ctx, c, p, w, func() error {
		c.zoneCutAt = time.Now()
		for _, h := range c.zoneA() {
			if err := h.Disconnect(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	if lost, err := p.lostWrites(); err == nil {
		d.LostWrites = len(lost)
	}
	if d.PodsRescheduledSeconds, err = c.waitRescheduled(c.zoneCutAt); err != nil {
		return d, err
	}
	c.controllerManagerTakeover(&d, w, c.zoneCutAt)
	d.note(c.notReadyNote(c.workers[0].Name, c.zoneCutAt))
	d.note("healed by drill e")
	return d, nil
}

// waitRescheduled waits until the probe Deployment runs all its pods
// ready outside zone a, which lost its worker at since: zone a's node
// NotReady after the grace period, its pod evicted after the eviction
// toleration (or deleted with its Node), and a new one started. It returns
// the time from since.
func (c *cluster) waitRescheduled(since time.Time) (*float64, error) {
	limit := c.stack.nodeGrace + c.stack.podEviction + 3*time.Minute
	lost := c.stack.zones[0]
	_, err := c.waitFor(fmt.Sprintf("the probe's %d pods ready outside %s", probeReplicas, lost), limit-time.Since(since), func() error {
		counts, err := c.readyPodsPerZone("default", "app="+probeApp)
		if err != nil {
			return err
		}
		if ready := counts[c.stack.zones[1]] + counts[c.stack.zones[2]]; ready != probeReplicas {
			return fmt.Errorf("ready pods by zone %s", perZone(counts))
		}
		return nil
	})
	return seconds(time.Since(since)), err
}

func restoreZone(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	b := c.stack.bounds()
	start := time.Now()
	// etcd-a catches up as a restarted member does, and cp-a's API server
	// is ready again once its etcd client tries again, after the
	// connection backoff the whole cut built up; then the load balancer
	// needs its healthy checks in a row.
	d := Drill{RecoveryBoundSeconds: seconds(lab.EtcdRestart(c.stack.etcd) + grpcReconnect(start.Sub(c.zoneCutAt)) + b.admission + recoverySlack)}
	for _, h := range c.zoneA() {
		if err := h.Reconnect(); err != nil {
			return d, err
		}
	}
	took, err := c.waitFor("zone a back: 3 healthy etcd members, cp-a in rotation", recoveryLimit, c.fullyHealthy)
	if err != nil {
		return d, err
	}
	d.RecoverySeconds = seconds(took)
	p.record(&d, start, time.Now())
	if err := heal(c, p, &d); err != nil {
		return d, err
	}
	// Called first: a return reads d in no set order with the call.
	err = c.respread(&d)
	return d, err
}

// partitionFromEtcd cuts cp-b from every etcd member while its API server
// keeps accepting connections, from a whole cluster, with the load
// balancer checking as check says, and measures errors through the load balancer for long enough
// that a /readyz check takes the node out twice over. Recovery is when
// the load balancer took cp-b out; with a check that never does, there is
// none.
func partitionFromEtcd(check string) func(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	return func(ctx context.Context, c *cluster, p *probe) (Drill, error) {
		removal := c.stack.bounds().removal
		d := Drill{HealthCheck: check}
		if check == healthCheckReadyz {
			d.RecoveryBoundSeconds = seconds(removal)
		}
		if c.check != check {
			c.check = check
			if err := c.startHAProxy(); err != nil {
				return d, err
			}
			if _, err := c.waitFor("haproxy with the "+check+" check", recoveryLimit, c.fullyHealthy); err != nil {
				return d, err
			}
		}
		if _, err := c.settle(); err != nil {
			return d, err
		}
		victim := c.nodes[1]
		span := 2 * removal
		start := time.Now()
		for _, m := range c.members {
			if err := victim.Host.InHost("ip", "route", "add", "blackhole", m.Host.IP+"/32"); err != nil {
				return d, err
			}
		}
		for time.Since(start) < span {
			if err := ctx.Err(); err != nil {
				return d, err
			}
			if d.RemovalSeconds == nil && c.outOfRotation(map[string]bool{victim.Name: true}) {
				d.RemovalSeconds = seconds(time.Since(start))
			}
			time.Sleep(200 * time.Millisecond)
		}
		p.record(&d, start, time.Now())
		d.RemovalSeconds = c.removedAfter(map[string]bool{victim.Name: true}, start, d.RemovalSeconds)
		d.RecoverySeconds = d.RemovalSeconds
		d.note(c.removalNote(victim.Name, start, d.RemovalSeconds))
		for _, m := range c.members {
			if err := victim.Host.InHost("ip", "route", "del", "blackhole", m.Host.IP+"/32"); err != nil {
				return d, err
			}
		}
		if err := heal(c, p, &d); err != nil {
			return d, err
		}
		if check != healthCheckReadyz {
			// Back to kubeha's check for whatever runs next.
			c.check = healthCheckReadyz
			if err := c.startHAProxy(); err != nil {
				return d, err
			}
			_, err := c.waitFor("haproxy with the "+bootstrap.HealthCheckPath+" check", recoveryLimit, c.fullyHealthy)
			return d, err
		}
		return d, nil
	}
}
