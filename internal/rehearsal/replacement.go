package rehearsal

// Drills of what AWS does to nodes: an instance replaced by its group, a
// lost data volume, a first boot that AWS refuses for a while. Each
// replacement boots from the same user-data as the instance it replaces.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/awsdouble"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
)

// attachRefusal is how long EC2 refuses a replacement etcd member's volume
// attach in drill b.
const attachRefusal = time.Minute

// launchLimit is how long a new member may take to be ready for a restore:
// nine nodes and their pods share the lab machine's CPUs, where each node
// on EC2 has its own.
const launchLimit = 8 * time.Minute

// bootLimit is how long the rehearsal waits for a launched node before it
// gives up on it: until the node itself would have given up. Its deadline
// counts from its first-boot unit's start, after cloud-init (50 to 90 s
// after launch), and it gives up once the try then running fails (a
// download tried 5 times, 70 to 100 s on the busy machine), with 4 AWS
// calls more. A control-plane node's boot took 549 to 600 s after launch
// while eight other nodes shared the lab machine's two CPUs.
func (c *cluster) bootLimit() time.Duration { return c.stack.bootstrapDeadline + 5*time.Minute }

// replaceInstance launches g's new instance and waits until its first
// boot completed the launch hook, recording how long that took.
func (c *cluster) replaceInstance(d *Drill, g *lab.NodeGroup) error {
	if slices.Contains(c.members, g) {
		if err := c.memberLetGo(d, g); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := g.Start(); err != nil {
		return err
	}
	took, err := c.waitFor(g.Name+"'s replacement in service", c.bootLimit(), func() error {
		if !g.InService() {
			return fmt.Errorf("%s's launch hook is not completed", g.Name)
		}
		return nil
	})
	log := g.BootstrapLog()
	if err != nil {
		return bootFailure(err, log)
	}
	d.ReplacementInServiceSeconds = seconds(took)
	if retried := retriedSteps(log); retried != "" {
		d.note(g.Name + "'s replacement retried: " + retried)
	}
	c.logf("%s's replacement in service %.0fs after it launched; its steps took: %s", g.Name, time.Since(start).Seconds(), stepTimes(log))
	return nil
}

// bootFailure is err for a replacement that did not come up, with how
// long each of its steps took and its first boot's log.
func bootFailure(err error, log string) error {
	return fmt.Errorf("%w; its steps took: %s\n%s", err, stepTimes(log), log)
}

// stepLine reads one of bootstrap-steps.sh's "step NAME<sep>REST" lines,
// not a tool's output that happens to hold the words.
func stepLine(line, sep string) (name, rest string, ok bool) {
	_, after, found := strings.Cut(line, "step ")
	name, rest, matched := strings.Cut(after, sep)
	return name, rest, found && matched && !strings.Contains(name, " ")
}

// stepTimes lists how long each first-boot step took ("kubeadm 212s"),
// from bootstrap-steps.sh's "step NAME done in Ns" lines, in order; a
// slow boot says where its time went.
func stepTimes(log string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if name, took, ok := stepLine(line, " done in "); ok {
			out = append(out, name+" "+took)
		}
	}
	if len(out) == 0 {
		return "no step done"
	}
	return strings.Join(out, ", ")
}

// memberLetGo takes member g's dead instance out of its group, as Auto
// Scaling does with one that failed its health checks: its leave hook
// holds it until another member, finding it silent, lets it go, which
// must not wait for the hook's timeout.
func (c *cluster) memberLetGo(d *Drill, g *lab.NodeGroup) error {
	if err := c.cloud.TerminateInGroup(g.Killed); err != nil {
		return err
	}
	took, err := c.waitFor(g.Name+"'s dead instance let go through its leave hook", 2*time.Minute, func() error {
		switch gi, _ := c.cloud.GroupInstance(g.Killed); {
		case gi.State != awsdouble.Terminating:
			return fmt.Errorf("%s is %s", g.Killed, gi.State)
		case !gi.Released:
			return fmt.Errorf("%s left by its hook's timeout, let go by no member", g.Killed)
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.note(fmt.Sprintf("%s's dead instance let go by another member through its leave hook %.1fs after its group took it out", g.Name, took.Seconds()))
	return nil
}

// retriedSteps says which first-boot steps failed and were tried again,
// and how often ("volume 6 times"), from bootstrap-steps.sh's "step NAME
// failed" lines; "" if none.
func retriedSteps(log string) string {
	var names []string
	times := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		name, _, ok := stepLine(line, " failed (exit ")
		if !ok {
			continue
		}
		if times[name] == 0 {
			names = append(names, name)
		}
		times[name]++
	}
	var out []string
	for _, name := range names {
		if times[name] == 1 {
			out = append(out, name+" once")
		} else {
			out = append(out, fmt.Sprintf("%s %d times", name, times[name]))
		}
	}
	return strings.Join(out, ", ")
}

// loseEtcdVolume takes a follower's instance and its data volume with it
// while S3 holds no snapshot (expired, or backups stopped): only the
// cluster's marker says the cluster exists. The replacement must join it
// as a learner, be promoted once caught up, and the other two members
// must keep quorum throughout.
func loseEtcdVolume(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	w, err := c.settle()
	if err != nil {
		return Drill{}, err
	}
	victimIndex := (w.etcdLeader + 1) % len(c.members)
	victim := c.members[victimIndex]
	w.lostMembers[victimIndex] = true
	bucket, err := lab.DeclaredBucket(c.stack.declared, "-backups")
	if err != nil {
		return Drill{}, err
	}
	if _, err := c.cloud.Object(bucket, bootstrap.EtcdClusterMarkerKey); err != nil {
		return Drill{}, fmt.Errorf("the cluster's marker is not in S3: %w", err)
	}
	snapshots, err := c.cloud.List(bucket, "snapshots/")
	if err != nil {
		return Drill{}, err
	}
	for _, key := range snapshots {
		if err := c.cloud.DeleteObject(bucket, key); err != nil {
			return Drill{}, err
		}
	}
	volume, err := c.volumeOf(victim.Name)
	if err != nil {
		return Drill{}, err
	}
	// Quorum: a leader among the two members left, sampled throughout.
	samples, lost := 0, 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(lab.PollInterval):
			}
			samples++
			if c.etcdLeaderAmong(w.lostMembers) < 0 {
				lost++
			}
		}
	}()
	d, err := measure(ctx, c, p, w, func() error {
		victim.Kill()
		return c.cloud.WipeVolume(volume)
	})
	if err == nil {
		err = c.replaceInstance(&d, victim)
	}
	close(stop)
	<-sampled
	if err != nil {
		return d, err
	}
	d.QuorumLostSamples = &lost
	voters, err := c.etcdVoters()
	if err != nil || len(voters) != len(c.members) {
		return d, fmt.Errorf("after the replacement, voters %v (%v), want all %d members", voters, err, len(c.members))
	}
	promote, start := victim.UnitLog("kubeha-etcd-promote.service"), victim.UnitLog("etcd.service")
	if !strings.Contains(promote, "promoted from learner to voter") || !strings.Contains(start, "rejoining as a replacement member") {
		return d, fmt.Errorf("%s did not rejoin as a learner and get promoted:\n%s\n%s", victim.Name, start, promote)
	}
	d.note(fmt.Sprintf("%s rejoined on a blank volume with %d snapshots deleted, as a learner, promoted; quorum lost in %d of %d samples",
		victim.Name, len(snapshots), lost, samples))
	if lost > 0 {
		return d, fmt.Errorf("quorum lost in %d of %d samples while %s was replaced", lost, samples, victim.Name)
	}
	return d, heal(c, p, &d)
}

// volumeOf is the etcd data volume the program declared for a member.
func (c *cluster) volumeOf(member string) (string, error) {
	for _, r := range c.stack.declared {
		if r.Type == "aws:ebs/volume:Volume" && r.Tags()[bootstrap.EtcdMemberTag] == member {
			return r.ID, nil
		}
	}
	return "", fmt.Errorf("no volume tagged %s=%s", bootstrap.EtcdMemberTag, member)
}

// etcdVoters are the names of the members that vote.
func (c *cluster) etcdVoters() ([]string, error) {
	var list struct {
		Members []struct {
			Name      string
			IsLearner bool
		}
	}
	if err := c.etcdGateway("/v3/cluster/member/list", map[string]any{}, &list); err != nil {
		return nil, err
	}
	var voters []string
	for _, member := range list.Members {
		if !member.IsLearner {
			voters = append(voters, member.Name)
		}
	}
	return voters, nil
}

// refuseAttach makes EC2 refuse every volume attach for attachRefusal
// from the first one refused, however long a first boot takes to get
// there on a busy machine, then allows them again.
func (c *cluster) refuseAttach() (allowed <-chan struct{}) {
	since := time.Now()
	c.cloud.Fault(awsdouble.EC2, "AttachVolume", awsdouble.Fault{Refuse: "UnauthorizedOperation"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.cloud.Fault(awsdouble.EC2, "AttachVolume", awsdouble.Fault{})
		for !c.attachRefusedSince(since) {
			select {
			case <-time.After(lab.PollInterval):
			case <-time.After(launchLimit - time.Since(since)):
				return
			case <-c.ctx.Done():
				return
			}
		}
		select {
		case <-time.After(attachRefusal):
		case <-c.ctx.Done():
		}
	}()
	return done
}

// attachRefusedSince says whether EC2 refused a volume attach since then.
func (c *cluster) attachRefusedSince(since time.Time) bool {
	return slices.ContainsFunc(c.cloud.Calls(), func(call awsdouble.Call) bool {
		return call.Action == "AttachVolume" && call.Status != http.StatusOK && call.Time.After(since)
	})
}

// neverGroup is drill i's auto-scaling group: zone c's control-plane
// launch template in a group of its own, whose instances S3 refuses (a
// role that cannot read the node assets). No first boot of it can
// succeed, and none gets far enough to touch the cluster.
const neverGroup = "cp-c-never"

// neverDrill is drill i, which runs alongside the others: it takes the
// stack's whole bootstrap deadline, longer than any of them.
var neverDrill = drill{name: "i", description: "a node that can never boot (S3 refuses its group) gives itself up at its deadline and its group replaces it; it runs alongside the other drills"}

// neverBootstraps starts drill i: it launches an instance into
// neverGroup. Past the stack's bootstrap deadline the instance must count
// its failure once (the metric the alarm watches), abandon its launch
// hook and mark itself Unhealthy; its group then replaces it with an
// instance that boots from the same user-data and is refused the same
// way. wait returns the result; stop ends the drill early.
func (c *cluster) neverBootstraps() (wait func() (Drill, error), stop func(), err error) {
	i := len(c.stack.zones) - 1
	host, err := c.net.AddHostOn(zoneNetwork(i), neverGroup, zoneNet(i)+".22", nil, nil)
	if err != nil {
		return nil, nil, err
	}
	c.cloud.FaultGroup(neverGroup, awsdouble.S3, "*", awsdouble.Fault{Refuse: "AccessDenied"})
	g := c.cloud.NewNodeGroup(c.stack.rootfs, neverGroup, c.stack.zones[i], host, c.nodes[i].UserData)
	g.Tags, g.PutResponseHopLimit = c.nodes[i].Tags, c.nodes[i].PutResponseHopLimit
	launched := time.Now()
	if err := g.Start(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	var d Drill
	var drillErr error
	go func() {
		defer close(done)
		d, drillErr = c.giveUpAndReplace(ctx, g, launched)
		g.Kill()
		c.cloud.FaultGroup(neverGroup, awsdouble.S3, "*", awsdouble.Fault{})
	}()
	wait = func() (Drill, error) {
		<-done
		return d, drillErr
	}
	stop = func() {
		cancel()
		<-done
	}
	return wait, stop, nil
}

// giveUpAndReplace is drill i's check of g, launched at launched.
func (c *cluster) giveUpAndReplace(ctx context.Context, g *lab.NodeGroup, launched time.Time) (Drill, error) {
	var d Drill
	deadline := c.stack.bootstrapDeadline
	first := g.Instance.ID
	_, err := lab.WaitFor(ctx, g.Name+" giving itself up", c.bootLimit(), func() error {
		if gi, _ := c.cloud.GroupInstance(first); gi.State != awsdouble.Terminating || gi.Healthy {
			return fmt.Errorf("%s is %s, healthy %v", first, gi.State, gi.Healthy)
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("%w\n%s\n%s", err, g.BootState(), g.BootstrapLog())
	}
	gaveUp := time.Since(launched)
	d.GaveUpSeconds = seconds(gaveUp)
	log := g.BootstrapLog()
	if gaveUp < deadline {
		return d, fmt.Errorf("%s gave up %.0fs after launch, before its %.0fs deadline:\n%s", g.Name, gaveUp.Seconds(), deadline.Seconds(), log)
	}
	if n := strings.Count(log, "asking to be replaced"); n != 1 || !strings.Contains(log, "step kubernetes failed") {
		return d, fmt.Errorf("%s asked to be replaced %d times, want once after its download step failed:\n%s", g.Name, n, log)
	}
	failed := 0.0
	for _, m := range c.cloud.Metrics() {
		if m.Name == bootstrap.BootstrapFailedMetric && m.Dimensions[bootstrap.EtcdSnapshotMetricDimension] == c.stack.clusterName {
			failed += m.Value
		}
	}
	if failed != 1 {
		return d, fmt.Errorf("%s counted %.0f, want 1", bootstrap.BootstrapFailedMetric, failed)
	}

	if err := g.Replace(); err != nil {
		return d, err
	}
	if _, err := lab.WaitFor(ctx, g.Name+"'s replacement refused as the first was", 3*time.Minute, func() error {
		if !strings.Contains(g.BootstrapLog(), "step kubernetes failed") {
			return fmt.Errorf("%s has not tried its download step yet", g.Instance.ID)
		}
		return nil
	}); err != nil {
		return d, err
	}
	ran, err := g.Instance.RanUserData()
	if err != nil {
		return d, err
	}
	if gi, _ := c.cloud.GroupInstance(g.Instance.ID); !bytes.Equal(ran, g.UserData) || gi.State != awsdouble.PendingWait || g.Instance.ID == first {
		return d, fmt.Errorf("%s's replacement %s: ran its launch template's user-data: %v; %s, want %s", g.Name, g.Instance.ID,
			bytes.Equal(ran, g.UserData), gi.State, awsdouble.PendingWait)
	}
	d.note(fmt.Sprintf("%s gave up %.0fs after launch (deadline %.0fs): %s counted once, launch hook abandoned, Unhealthy; "+
		"its group replaced %s with %s, which boots from the same user-data and waits at %s; neither was ever a load-balancer target",
		first, gaveUp.Seconds(), deadline.Seconds(), bootstrap.BootstrapFailedMetric, first, g.Instance.ID, awsdouble.PendingWait))
	return d, nil
}
