package rehearsal

// Drill u: the cluster, created at the release before the stack's, is
// upgraded to the stack's as an operator does it: `pulumi up` at the new
// release (the stack's program run again on its state, with the running
// version the cluster records), then `kubeha upgrade`'s steps
// (internal/upgrade), which replace every node from its new launch
// template's user-data. Every second meanwhile, each serving API server's
// version and each kubelet's are compared, and the Leases read.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/upgrade"
)

// UpgradeReport is what drill u measured.
type UpgradeReport struct {
	From string `json:"from"`
	To   string `json:"to"`
	// EtcdFrom and EtcdTo are the etcd releases the members rolled between.
	EtcdFrom string `json:"etcdFrom"`
	EtcdTo   string `json:"etcdTo"`
	// TotalSeconds is from `pulumi up` until kube-proxy ran the new
	// release on every node; the drill's requests, failures and error
	// rate are over `kubeha upgrade`, after PulumiUp.
	TotalSeconds float64  `json:"totalSeconds"`
	PulumiUp     PulumiUp `json:"pulumiUp"`
	// Nodes are the nodes replaced, in order.
	Nodes []UpgradedNode `json:"nodes"`
	// StoppedAndResumed is whether `kubeha upgrade` was stopped after the
	// first node and run again, resuming.
	StoppedAndResumed bool `json:"stoppedAndResumed"`
	// FailuresBetweenReplacements counts the failed requests through the
	// load balancer while no node was being replaced.
	FailuresBetweenReplacements int `json:"failuresBetweenReplacements"`
	// LongestUnheldLeaseSeconds is, by Lease, the longest time it had no
	// live holder (its last renewal older than its duration).
	LongestUnheldLeaseSeconds map[string]float64 `json:"longestUnheldLeaseSeconds"`
	// SkewSamples counts the once-a-second comparisons of every serving API
	// server's version with every kubelet's; SkewViolations lists those in
	// which a kubelet was newer than an API server, two minors older, or
	// API servers a minor or more apart by two.
	SkewSamples    int      `json:"skewSamples"`
	SkewViolations []string `json:"skewViolations"`
	// Versions are the distinct (API servers; kubelets) versions seen, in
	// order.
	Versions []string `json:"versions"`
}

// PulumiUp is the stack program's run at the new release, in the lab on
// the cluster's own CPUs, and what the load balancer's clients saw
// meanwhile.
type PulumiUp struct {
	Seconds  float64 `json:"seconds"`
	Requests int     `json:"requests"`
	Failures int     `json:"failures"`
}

// UpgradedNode is one node replaced and what the load balancer's clients
// saw meanwhile.
type UpgradedNode struct {
	Name         string  `json:"name"`
	Zone         string  `json:"zone"`
	ControlPlane bool    `json:"controlPlane"`
	EtcdMember   bool    `json:"etcdMember"`
	Seconds      float64 `json:"seconds"`
	Requests     int     `json:"requests"`
	Failures     int     `json:"failures"`
	// ErrorWindowSeconds is from the node's replacement to the end of the
	// last failed request through the load balancer; 0 if none failed.
	ErrorWindowSeconds float64 `json:"errorWindowSeconds"`
}

// previousRelease is the pinned release one minor below version.
func previousRelease(version string) (string, error) {
	v, ok := bootstrap.ParseVersion(version)
	if !ok {
		return "", fmt.Errorf("kubernetesVersion %q is not a release", version)
	}
	for _, r := range bootstrap.KubernetesReleases {
		if p, _ := bootstrap.ParseVersion(r.Version); p.Major == v.Major && p.Minor+1 == v.Minor {
			return r.Version, nil
		}
	}
	return "", fmt.Errorf("drill u upgrades to %s from the release before it, and kubeha pins none", version)
}

// upgradeNodeLimit is how long a node replaced by the upgrade may take to
// serve again: kubeha upgrade's own default, as kops' rolling update
// allows. A new control-plane node imports its image archives beside the
// eight other nodes, and took over launchLimit on a loaded lab machine.
const upgradeNodeLimit = 15 * time.Minute

func upgradeCluster(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	from, to := c.stack.kubernetesVersion, c.stack.upgradeTo
	etcdFrom, etcdTo := c.stack.etcdVersion, c.stack.etcdUpgradeTo
	d := Drill{}
	if _, err := c.settle(); err != nil {
		return d, err
	}
	began := time.Now()
	// `pulumi up` at the new release, on the stack's state.
	raw, err := withEtcdVersion(c.stack.raw, etcdTo)
	if err != nil {
		return d, err
	}
	raw[kubernetesVersionKey] = to
	declared, err := declareAgain(raw, c.stack.rootfs, c.stack.declared, from)
	if err != nil {
		return d, fmt.Errorf("pulumi up at %s: %w", to, err)
	}
	if err := c.cloud.PutObjects(declared, ""); err != nil {
		return d, err
	}
	// Each group launches from its template's new version; running
	// instances keep theirs.
	for i, g := range c.members {
		data, err := lab.UserData(declared, bootstrap.EtcdMemberTag, c.stack.etcd.Members[i].Name)
		if err != nil {
			return d, err
		}
		g.SetUserData(data)
	}
	for i, g := range c.nodes {
		data, err := lab.UserData(declared, "Name", controlPlaneGroup(c.stack, i))
		if err != nil {
			return d, err
		}
		g.SetUserData(data)
	}
	for i, g := range c.workers {
		template, err := workerTemplate(declared, c.stack.clusterName, c.stack.zones[i])
		if err != nil {
			return d, err
		}
		data, err := lab.UserData(declared, "Name", template)
		if err != nil {
			return d, err
		}
		g.SetUserData(data)
	}
	c.stack.declared, c.stack.raw = declared, raw
	c.logf("pulumi up at %s and etcd %s: every etcd member's launch template holds etcd %s, every control-plane and worker one %s, its kubelet held at %s until the version record moves",
		to, etcdTo, etcdTo, to, from)

	// `kubeha upgrade`, with the stack's kubeconfig through the load
	// balancer, against the AWS double.
	kubeconfig, err := bootstrap.AdminKubeconfig(c.stack.clusterName, fmt.Sprintf("https://%s:%d", c.endpoint, bootstrap.APIServerPort),
		string(c.k8sCA.CertPEM), string(c.admin.CertPEM), string(c.admin.KeyPEM))
	if err != nil {
		return d, err
	}
	c.cloud.OnTerminate = c.replaceTerminated
	defer func() { c.cloud.OnTerminate = nil }()
	var memberInstances []string
	for _, g := range c.members {
		memberInstances = append(memberInstances, g.Instance.ID)
	}
	// The API's error rate is over `kubeha upgrade`: here `pulumi up` runs
	// the stack program beside the cluster, on the same two CPUs, where on
	// AWS it runs on the operator's machine and touches no node.
	start := time.Now()
	pulumiUp := p.window(began, start)
	watch := c.watchUpgrade()
	options := upgrade.Options{ClusterName: c.stack.clusterName, Target: to, Kubeconfig: []byte(kubeconfig),
		Server: fmt.Sprintf("%s:%d", lbIP, bootstrap.APIServerPort), AWS: c.cloud.AWSConfig(),
		NodeTimeout: upgradeNodeLimit, DrainTimeout: 5 * time.Minute}
	// The operator stops it (Ctrl-C) once the first node is replaced, and
	// runs it again, as the README's runbook says.
	first, stop := context.WithCancel(ctx)
	defer stop()
	options.Logf = func(format string, args ...any) {
		message := fmt.Sprintf(format, args...)
		c.logf("%s", message)
		if strings.Contains(message, "'s successor serves") {
			stop()
		}
	}
	var replacedNodes []upgrade.Replacement
	u, runErr := upgrade.Command(first, options)
	replacedNodes = append(replacedNodes, replaced(u)...)
	stopped := runErr != nil && first.Err() != nil && ctx.Err() == nil
	if stopped {
		c.logf("kubeha upgrade stopped after %d node(s): %v; running it again", len(replacedNodes), runErr)
		options.Logf = c.logf
		u, runErr = upgrade.Command(ctx, options)
		replacedNodes = append(replacedNodes, replaced(u)...)
	}
	end := time.Now()
	r := watch.stop()
	r.From, r.To, r.EtcdFrom, r.EtcdTo, r.TotalSeconds = from, to, etcdFrom, etcdTo, end.Sub(began).Seconds()
	r.PulumiUp = PulumiUp{Seconds: start.Sub(began).Seconds(), Requests: pulumiUp.requests, Failures: pulumiUp.failures}
	r.StoppedAndResumed = stopped
	for _, rep := range replacedNodes {
		w := p.window(rep.Started, rep.Serving)
		r.Nodes = append(r.Nodes, UpgradedNode{Name: rep.Node.Name, Zone: rep.Node.Zone, ControlPlane: rep.Node.ControlPlane, EtcdMember: rep.Etcd,
			Seconds: rep.Serving.Sub(rep.Started).Seconds(), Requests: w.requests, Failures: w.failures, ErrorWindowSeconds: w.lastFailure.Seconds()})
	}
	d.Upgrade = &r
	p.record(&d, start, end)
	r.FailuresBetweenReplacements = d.Failures
	for _, line := range p.failureTimeline(start, end) {
		c.logf("upgrade: failed request at %s", line)
	}
	c.logf("upgrade: the load balancer's rotation: %s", strings.Join(c.rotationChanges(start, end), "; "))
	for _, l := range c.outOfRotationLogs(start, end) {
		c.logf("upgrade: %s", l)
	}
	for _, n := range r.Nodes {
		r.FailuresBetweenReplacements -= n.Failures
	}
	d.RecoverySeconds = seconds(end.Sub(start))
	if runErr != nil {
		return d, runErr
	}
	c.stack.kubernetesVersion, c.stack.etcdVersion = to, etcdTo
	if err := c.etcdAt(etcdTo); err != nil {
		return d, err
	}
	// Each member's own timer let its instance go, not the hook's timeout.
	for i, id := range memberInstances {
		if gi, _ := c.cloud.GroupInstance(id); !gi.Released {
			return d, fmt.Errorf("%s's instance %s left its group %s, not let go through its leave hook", c.members[i].Name, id, gi.State)
		}
	}
	if len(r.SkewViolations) > 0 {
		return d, fmt.Errorf("%d of %d samples broke the version-skew policy, first: %s", len(r.SkewViolations), r.SkewSamples, r.SkewViolations[0])
	}
	if v, _ := c.cloud.Parameter(bootstrap.RunningVersionParameter(c.stack.clusterName)); v != to {
		return d, fmt.Errorf("the version record says %q after the upgrade, want %s", v, to)
	}
	c.logf("upgraded from %s to %s in %.0fs; %d nodes replaced; %d of %d API requests failed; longest unheld Lease %v", from, to, r.TotalSeconds,
		len(r.Nodes), d.Failures, d.Requests, r.LongestUnheldLeaseSeconds)
	if err := heal(c, p, &d); err != nil {
		return d, err
	}
	// The drains took the probe's clients (bare pods) and moved its pods:
	// the README's step puts one back in each zone for the next drills.
	if err := c.restartClients(); err != nil {
		return d, err
	}
	return d, c.respread(&d)
}

// replaced is what the upgrade replaced, none if it never started.
func replaced(u *upgrade.Upgrade) []upgrade.Replacement {
	if u == nil {
		return nil
	}
	return u.Replaced
}

// replaceTerminated does what an auto-scaling group does with an instance
// `kubeha upgrade` terminated in it: ends it and launches a new one from
// its launch template's user-data. A worker's new instance waits until
// the cloud controller manager's stand-in deleted its Node: AWS names a
// new instance anew, the lab reuses the name.
func (c *cluster) replaceTerminated(instanceID string) {
	var g *lab.NodeGroup
	for _, candidate := range slices.Concat(c.members, c.nodes, c.workers) {
		if candidate.Instance != nil && candidate.Instance.ID == instanceID {
			g = candidate
		}
	}
	if g == nil {
		c.logf("asked to replace %s, which no group runs", instanceID)
		return
	}
	worker := slices.Contains(c.workers, g)
	if slices.Contains(c.members, g) {
		var said []string
		for _, line := range strings.Split(g.UnitLog(bootstrap.EtcdLeaveUnit), "\n") {
			if strings.Contains(line, "kubeha-etcd[") {
				said = append(said, line)
			}
		}
		c.logf("%s's leave, as its timer logged it: %s", g.Name, strings.Join(said, " | "))
	}
	g.Terminate()
	if worker {
		if _, err := c.waitFor(g.Name+"'s Node deleted", 2*time.Minute, func() error {
			code, _, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/nodes/"+g.Name, nil)
			if err != nil || code != http.StatusNotFound {
				return fmt.Errorf("HTTP %d (%v)", code, err)
			}
			return nil
		}); err != nil {
			c.logf("%v", err)
		}
	}
	if err := g.Start(); err != nil {
		c.logf("launching %s's new instance: %v", g.Name, err)
	}
}

// upgradeWatch samples versions and Leases once a second.
type upgradeWatch struct {
	stopCh chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	report UpgradeReport
	// kubelets are each Node's last kubelet version seen.
	kubelets map[string]string
}

func (c *cluster) watchUpgrade() *upgradeWatch {
	w := &upgradeWatch{stopCh: make(chan struct{}), done: make(chan struct{}),
		report: UpgradeReport{LongestUnheldLeaseSeconds: map[string]float64{}, SkewViolations: []string{}}, kubelets: map[string]string{}}
	go func() {
		defer close(w.done)
		expiredSince := map[string]time.Time{}
		// A sample slower than a second takes the next tick, not a
		// second more.
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-w.stopCh:
				return
			case <-tick.C:
			}
			c.sampleSkew(w)
			for _, name := range lab.LeaderElected {
				c.sampleLease(w, name, expiredSince)
			}
		}
	}()
	return w
}

func (w *upgradeWatch) stop() UpgradeReport {
	close(w.stopCh)
	<-w.done
	return w.report
}

// sampleSkew compares every API server that answers, asked directly and
// all at once (one being replaced answers only by timing out), with every
// kubelet's version as its Node reports it.
func (c *cluster) sampleSkew(w *upgradeWatch) {
	answers := make([]string, len(c.nodeAdmins))
	var asked sync.WaitGroup
	for i, api := range c.nodeAdmins {
		asked.Go(func() {
			code, body, err := api.Do(http.MethodGet, "/version", nil)
			var v struct{ GitVersion string }
			if err == nil && code == http.StatusOK && json.Unmarshal([]byte(body), &v) == nil {
				answers[i] = nodeName(i) + "=" + v.GitVersion
			}
		})
	}
	asked.Wait()
	servers := slices.DeleteFunc(answers, func(s string) bool { return s == "" })
	nodes, err := c.listNodes()
	if err != nil || len(servers) == 0 {
		return
	}
	var kubelets []string
	for _, n := range nodes.Items {
		name, version := n.Metadata.Name, n.Status.NodeInfo.KubeletVersion
		kubelets = append(kubelets, name+"="+version)
		if was, ok := w.kubelets[name]; ok && was != version {
			c.logf("upgrade: %s's kubelet reports %s, was %s", name, version, was)
		}
		w.kubelets[name] = version
	}
	var problems []string
	for _, s := range servers {
		sv, _ := bootstrap.ParseVersion(after(s))
		for _, k := range kubelets {
			kv, ok := bootstrap.ParseVersion(after(k))
			if !ok {
				continue
			}
			if sv.Less(kv) {
				problems = append(problems, fmt.Sprintf("kubelet %s is newer than API server %s", k, s))
			} else if sv.MinorsAbove(kv) >= 2 {
				problems = append(problems, fmt.Sprintf("kubelet %s is two minors below API server %s", k, s))
			}
		}
		for _, o := range servers {
			if ov, _ := bootstrap.ParseVersion(after(o)); ov.MinorsAbove(sv) > 1 {
				problems = append(problems, fmt.Sprintf("API servers %s and %s are more than a minor apart", o, s))
			}
		}
	}
	slices.Sort(kubelets)
	seen := distinct(servers) + "; " + distinct(kubelets)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.report.SkewSamples++
	if n := len(w.report.Versions); n == 0 || w.report.Versions[n-1] != seen {
		w.report.Versions = append(w.report.Versions, seen)
	}
	for _, p := range problems {
		w.report.SkewViolations = append(w.report.SkewViolations, time.Now().Format("15:04:05")+" "+p)
	}
}

// after is what follows "=" in name=version.
func after(s string) string { _, v, _ := strings.Cut(s, "="); return v }

// distinct are the versions in name=version pairs, sorted, each once.
func distinct(pairs []string) string {
	var versions []string
	for _, p := range pairs {
		if v := after(p); !slices.Contains(versions, v) {
			versions = append(versions, v)
		}
	}
	slices.Sort(versions)
	return strings.Join(versions, ",")
}

// sampleLease notes when a Lease's last renewal is older than its
// duration, and how long until someone holds it again.
func (c *cluster) sampleLease(w *upgradeWatch, name string, expiredSince map[string]time.Time) {
	code, body, err := c.lbAdmin.Do(http.MethodGet, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+name, nil)
	if err != nil || code != http.StatusOK {
		return
	}
	var lease struct {
		Spec struct {
			HolderIdentity         string
			LeaseDurationSeconds   int
			RenewTime, AcquireTime time.Time
		}
	}
	if json.Unmarshal([]byte(body), &lease) != nil {
		return
	}
	expiry := lease.Spec.RenewTime.Add(time.Duration(lease.Spec.LeaseDurationSeconds) * time.Second)
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if lease.Spec.HolderIdentity == "" || now.After(expiry) {
		if _, ok := expiredSince[name]; !ok {
			expiredSince[name] = expiry
			if now.Before(expiry) {
				expiredSince[name] = now
			}
		}
		return
	}
	if since, ok := expiredSince[name]; ok {
		// Held again since it was acquired, or (the same holder back)
		// renewed.
		held := lease.Spec.AcquireTime
		if held.Before(since) {
			held = lease.Spec.RenewTime
		}
		unheld := held.Sub(since).Seconds()
		w.report.LongestUnheldLeaseSeconds[name] = max(w.report.LongestUnheldLeaseSeconds[name], unheld)
		delete(expiredSince, name)
	}
	if _, ok := w.report.LongestUnheldLeaseSeconds[name]; !ok {
		w.report.LongestUnheldLeaseSeconds[name] = 0
	}
}
