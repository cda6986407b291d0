package rehearsal

import (
	"context"
	"fmt"
	"time"

	"github.com/kubeha/kubeha/internal/netlab"
)

// drill is one failure: fault breaks something, and the drill measures the
// cluster until it serves again, then heals it and waits until it is whole.
type drill struct {
	name, description string
	run               func(ctx context.Context, c *cluster, p *probe) (Drill, error)
}

// drills run in this order: zone a comes back (e) right after it is cut
// (c), so that every drill starts from a whole cluster.
var drills = []drill{
	{"a", "kill the control-plane node holding the scheduler and controller-manager Leases", killLeaseHolder},
	{"b", "kill the etcd leader", killEtcdLeader},
	{"c", "cut zone a: etcd-a and cp-a lose their network at once", cutZone},
	{"e", "bring zone a back: its members rejoin and its node re-enters rotation", restoreZone},
	{"d", "partition cp-b from etcd only, its port 6443 still open; load balancer checks HTTPS /readyz", partitionFromEtcd(healthCheckReadyz)},
	{"d-tcp", "the same partition; load balancer checks that TCP connects (kops, Typhoon)", partitionFromEtcd(healthCheckTCP)},
}

// recoveryLimit bounds how long a drill waits for the cluster.
const recoveryLimit = 3 * time.Minute

// watch follows what a fault may move: the Leases and the etcd leader.
type watch struct {
	scheduler, controllerManager string // holders before the fault
	etcdLeader                   int
	// lostNodes and lostMembers are what the fault took away.
	lostNodes   map[string]bool
	lostMembers map[int]bool
}

func (c *cluster) watchNow() watch {
	w := watch{etcdLeader: c.etcdLeader(), lostNodes: map[string]bool{}, lostMembers: map[int]bool{}}
	w.scheduler, _ = c.leaseHolder("kube-scheduler")
	w.controllerManager, _ = c.leaseHolder("kube-controller-manager")
	return w
}

// measure applies fault and polls until the cluster serves again without
// what was lost: the API answers through the load balancer, Leases held by
// live nodes, an etcd leader among live members, and settled, if given.
// It fills in the times.
func measure(ctx context.Context, c *cluster, p *probe, w watch, fault func() error, settled func() bool) (Drill, error) {
	var d Drill
	start := time.Now()
	if err := fault(); err != nil {
		return d, err
	}
	since := func() *float64 { s := time.Since(start).Seconds(); return &s }
	leaseMoved := func(name, before string, into **float64) bool {
		if !w.lostNodes[before] {
			return true // its holder survived; nothing to move
		}
		if *into == nil {
			if holder, err := c.leaseHolder(name); err == nil && holder != "" && !w.lostNodes[holder] {
				*into = since()
			}
		}
		return *into != nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return d, err
		}
		if time.Since(start) > recoveryLimit {
			return d, fmt.Errorf("the cluster did not serve again within %s", recoveryLimit)
		}
		schedulerOK := leaseMoved("kube-scheduler", w.scheduler, &d.SchedulerLeaseSeconds)
		managerOK := leaseMoved("kube-controller-manager", w.controllerManager, &d.ControllerManagerLeaseSecs)
		leaderOK := true
		if w.lostMembers[w.etcdLeader] {
			if d.EtcdLeaderSeconds == nil {
				if l := c.etcdLeader(); l >= 0 && !w.lostMembers[l] {
					d.EtcdLeaderSeconds = since()
				}
			}
			leaderOK = d.EtcdLeaderSeconds != nil
		}
		if schedulerOK && managerOK && leaderOK && (settled == nil || settled()) && p.serving(start, 3*time.Second) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.RecoverySeconds = time.Since(start).Seconds()
	p.record(&d, start, time.Now())
	return d, nil
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

// record fills d's traffic numbers from the probe's results between from
// and to.
func (p *probe) record(d *Drill, from, to time.Time) {
	var gap time.Duration
	d.Requests, d.Failures, gap = p.window(from, to)
	d.LongestGapSeconds = gap.Seconds()
	if d.Requests > 0 {
		d.ErrorRate = float64(d.Failures) / float64(d.Requests)
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

func (c *cluster) nodeNamed(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func killLeaseHolder(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	w := c.watchNow()
	victim := c.nodeNamed(w.scheduler)
	if victim == nil {
		return Drill{}, fmt.Errorf("no node holds the scheduler Lease (holder %q)", w.scheduler)
	}
	w.lostNodes[victim.name] = true
	d, err := measure(ctx, c, p, w, func() error {
		victim.stop()
		return victim.host.Disconnect()
	}, nil)
	if w.controllerManager != w.scheduler {
		d.Notes = fmt.Sprintf("the controller-manager Lease was on %s, not %s", w.controllerManager, victim.name)
	}
	if err != nil {
		return d, err
	}
	if err := victim.host.Reconnect(); err != nil {
		return d, err
	}
	for _, comp := range components {
		if err := victim.start(comp); err != nil {
			return d, err
		}
	}
	return d, heal(c, p, &d)
}

func killEtcdLeader(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	w := c.watchNow()
	if w.etcdLeader < 0 {
		return Drill{}, fmt.Errorf("no etcd leader to kill")
	}
	w.lostMembers[w.etcdLeader] = true
	victim := c.members[w.etcdLeader]
	d, err := measure(ctx, c, p, w, func() error {
		victim.host.Stop(victim.proc)
		return nil
	}, nil)
	if err != nil {
		return d, err
	}
	if err := c.startEtcd(w.etcdLeader); err != nil {
		return d, err
	}
	return d, heal(c, p, &d)
}

// zoneA is the first zone's etcd member and control-plane node.
func (c *cluster) zoneA() []*netlab.Host { return []*netlab.Host{c.members[0].host, c.nodes[0].host} }

func cutZone(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	w := c.watchNow()
	w.lostNodes[c.nodes[0].name], w.lostMembers[0] = true, true
	// Serving again includes the load balancer taking cp-a out.
	outOfRotation := func() bool {
		up, err := c.backendUp()
		return err == nil && !up["cp-a"]
	}
	d, err := measure(ctx, c, p, w, func() error {
		for _, h := range c.zoneA() {
			if err := h.Disconnect(); err != nil {
				return err
			}
		}
		return nil
	}, outOfRotation)
	if err != nil {
		return d, err
	}
	if lost, err := p.lostWrites(); err == nil {
		d.LostWrites = len(lost)
	}
	d.Notes = "healed by drill e"
	return d, nil
}

func restoreZone(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	start := time.Now()
	for _, h := range c.zoneA() {
		if err := h.Reconnect(); err != nil {
			return Drill{}, err
		}
	}
	var d Drill
	took, err := c.waitFor("zone a back: 3 healthy etcd members, cp-a in rotation", recoveryLimit, c.fullyHealthy)
	if err != nil {
		return d, err
	}
	d.RecoverySeconds = took.Seconds()
	p.record(&d, start, time.Now())
	return d, heal(c, p, &d)
}

// partitionFromEtcd cuts cp-b from every etcd member while its API server
// keeps accepting connections, with the load balancer checking as check
// says, and measures errors through the load balancer for long enough
// that a /readyz check takes the node out three times over.
func partitionFromEtcd(check string) func(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	return func(ctx context.Context, c *cluster, p *probe) (Drill, error) {
		d := Drill{HealthCheck: check}
		if c.check != check {
			c.check = check
			if err := c.startHAProxy(); err != nil {
				return d, err
			}
			if _, err := c.waitFor("haproxy with the "+check+" check", recoveryLimit, c.fullyHealthy); err != nil {
				return d, err
			}
		}
		victim := c.nodes[1]
		h := c.cfg.API.HealthCheck
		span := max(30*time.Second, 3*time.Duration(h.IntervalSeconds*h.UnhealthyThreshold)*time.Second)
		start := time.Now()
		for _, m := range c.members {
			if err := victim.host.InHost("ip", "route", "add", "blackhole", m.host.IP+"/32"); err != nil {
				return d, err
			}
		}
		out := 0.0
		for time.Since(start) < span {
			if err := ctx.Err(); err != nil {
				return d, err
			}
			if up, err := c.backendUp(); err == nil && !up[victim.name] && out == 0 {
				out = time.Since(start).Seconds()
			}
			time.Sleep(200 * time.Millisecond)
		}
		p.record(&d, start, time.Now())
		d.RecoverySeconds = time.Since(start).Seconds()
		if out > 0 {
			d.RecoverySeconds = out
			d.Notes = fmt.Sprintf("the load balancer took %s out after %.1fs", victim.name, out)
		} else {
			d.Notes = fmt.Sprintf("the load balancer kept %s in rotation for all %s", victim.name, span)
		}
		for _, m := range c.members {
			if err := victim.host.InHost("ip", "route", "del", "blackhole", m.host.IP+"/32"); err != nil {
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
			_, err := c.waitFor("haproxy with the /readyz check", recoveryLimit, c.fullyHealthy)
			return d, err
		}
		return d, nil
	}
}
