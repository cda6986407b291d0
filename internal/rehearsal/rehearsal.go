package rehearsal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/tools"
)

// Options says what to rehearse and where.
type Options struct {
	Stack     string
	StackFile string
	// WorkDir holds the nodes' files; it is removed afterwards.
	WorkDir string
	// LatencyMs is added between zones with tc netem; 0 adds none.
	LatencyMs int
	// Drills names the drills to run, in their usual order; none runs
	// them all.
	Drills []string
	Log    io.Writer
}

// Drill is one failure and what it cost, measured through the load
// balancer by the probe. A nil duration means the drill did not move it:
// a Lease that stayed, or no recovery at all.
type Drill struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	HealthCheck string  `json:"healthCheck"`
	Requests    int     `json:"requests"`
	Failures    int     `json:"failures"`
	ErrorRate   float64 `json:"errorRate"`
	// LongestGapSeconds is the longest time without a successful request.
	LongestGapSeconds float64 `json:"longestGapSeconds"`
	// ErrorWindowSeconds is from the fault to the end of the last failed
	// request through the load balancer; 0 if none failed.
	ErrorWindowSeconds float64 `json:"errorWindowSeconds"`
	// LatencySeconds are the successful requests' p50, p90 and p99.
	LatencySeconds map[string]float64 `json:"latencySeconds"`
	// ProbeSkippedTicks counts, since the probe started, the ticks on which
	// every probe slot was still busy; 0 means every request was sent.
	ProbeSkippedTicks          int      `json:"probeSkippedTicks"`
	SchedulerLeaseSeconds      *float64 `json:"schedulerLeaseSeconds"`
	ControllerManagerLeaseSecs *float64 `json:"controllerManagerLeaseSeconds"`
	EtcdLeaderSeconds          *float64 `json:"etcdLeaderSeconds"`
	// RemovalSeconds is how long until the load balancer stopped sending
	// the lost or failing node traffic.
	RemovalSeconds *float64 `json:"loadBalancerRemovalSeconds"`
	// RecoverySeconds is how long until the API served every request
	// again without what the drill took away; for (d) until the load
	// balancer took the node out, null if it never did.
	RecoverySeconds *float64 `json:"recoverySeconds"`
	// RecoveryBoundSeconds is what the stack's configuration allows the
	// recovery, if it promises one.
	RecoveryBoundSeconds *float64 `json:"recoveryBoundSeconds"`
	LostWrites           int      `json:"lostWrites"`
	// Service is what the probe workload's clients outside zone a saw.
	Service *ServiceTraffic `json:"service,omitempty"`
	// PodsRescheduledSeconds is, for a drill that takes a zone, from the
	// fault until the probe Deployment ran all its pods ready elsewhere.
	PodsRescheduledSeconds *float64 `json:"podsRescheduledSeconds,omitempty"`
	// DrainedSeconds is, for a worker terminated through its group, from
	// the termination until a control-plane node had drained it and let
	// it go through its drain hook.
	DrainedSeconds *float64 `json:"drainedSeconds,omitempty"`
	// Scheduling is what pods created one after another met during the
	// drill, for a drill that schedules them.
	Scheduling *Scheduling `json:"scheduling,omitempty"`
	// ReplacementInServiceSeconds is from the replacement instance's
	// launch until its first boot completed the launch hook: healthy for
	// its role (an etcd voter, a ready API server).
	ReplacementInServiceSeconds *float64 `json:"replacementInServiceSeconds,omitempty"`
	// Upgrade is drill u's.
	Upgrade *UpgradeReport `json:"upgrade,omitempty"`
	// QuorumLostSamples counts the samples, every poll interval while an
	// etcd member was replaced, in which the others had no leader.
	QuorumLostSamples *int `json:"quorumLostSamples,omitempty"`
	// GaveUpSeconds is from the launch of an instance that cannot boot
	// until it gave itself up: its failure counted, its launch hook
	// abandoned.
	GaveUpSeconds *float64 `json:"gaveUpSeconds,omitempty"`
	// RewoundWrites counts writes acknowledged after a restore's snapshot,
	// which the restore took back as it must; lostWrites excludes them.
	RewoundWrites int `json:"rewoundWrites,omitempty"`
	// Renewals counts, by node, the certificate renewals (control-plane
	// nodes) or refreshes (etcd nodes) its timer logged in drill j.
	Renewals map[string]int `json:"renewals,omitempty"`
	Notes    string         `json:"notes,omitempty"`
}

// Report is the whole rehearsal.
type Report struct {
	Stack string `json:"stack"`
	// KubernetesVersion is the release the cluster runs, as its control
	// plane records it (the SSM parameter `pulumi up` reads).
	KubernetesVersion string    `json:"kubernetesVersion"`
	StartedAt         time.Time `json:"startedAt"`
	SetUpSeconds      float64   `json:"setUpSeconds"`
	// BootSeconds is from launching every etcd member's and control-plane
	// node's instance at once, from nothing, to the cluster whole (every
	// member healthy, every API server ready and in rotation, both Leases
	// held); EtcdBootSeconds to every member healthy.
	BootSeconds     float64 `json:"bootSeconds"`
	EtcdBootSeconds float64 `json:"etcdBootSeconds"`
	TotalSeconds    float64 `json:"totalSeconds"`
	Drills          []Drill `json:"drills"`
	// Addons is the add-on drill's: the control plane applying the
	// stack's add-on set.
	Addons AddonsReport `json:"addons"`
	// Benchmark is kube-bench's run on a control-plane and an etcd node.
	Benchmark BenchmarkReport `json:"benchmark"`
	// JoinToken is the join token's rotation, before the drills whose
	// replacement nodes then join with the new token.
	JoinToken TokenRotation `json:"joinTokenRotation"`
	// WorkerJoin is what a worker's own join token got; WorkerBoot how a
	// worker booted from its user-data joined with one.
	WorkerJoin WorkerJoin `json:"workerJoin"`
	WorkerBoot WorkerBoot `json:"workerBoot"`
	// KubeletCertificates is how the kubelets serve, and what the
	// approver denied.
	KubeletCertificates KubeletCertificates `json:"kubeletCertificates"`
	// WorkloadIdentity is what pods reach: no node role, and AWS through
	// roles for their service accounts.
	WorkloadIdentity WorkloadIdentity `json:"workloadIdentity"`
	// KubeProxy is kube-proxy on the control-plane nodes.
	KubeProxy KubeProxy `json:"kubeProxy"`
	// DataPlane is the workers, the CNI, CoreDNS and the probe workload
	// before the drills.
	DataPlane DataPlane `json:"dataPlane"`
	// CertificateDaysLeft are the control-plane and etcd nodes' first
	// reports of the days left on their shortest-lived certificate.
	CertificateDaysLeft map[string]float64 `json:"certificateDaysLeft"`
	// OutsideNames are the names nodes looked up that neither the doubles
	// nor the lab's own zones and hosts answer: hosts on the internet,
	// which the lab does not reach. It must be empty.
	OutsideNames map[string]int `json:"outsideNames"`
	// LostWrites counts acknowledged writes missing at the end.
	LostWrites int `json:"lostWrites"`
	Writes     int `json:"acknowledgedWrites"`
}

// Available says why the rehearsal cannot run here, or "".
func Available() string {
	if why := netlab.Available(); why != "" {
		return why
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		return "needs haproxy (apt-get install haproxy)"
	}
	return ""
}

// Run sets the cluster up, drills it and tears it down, on success, on
// failure and when ctx is cancelled (Ctrl-C).
func Run(ctx context.Context, opts Options) (*Report, error) {
	if why := Available(); why != "" {
		return nil, errors.New("rehearsal " + why)
	}
	if err := checkDiskRoom(opts.WorkDir); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(opts.Log, "%s rehearsal: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	selected, err := selectDrills(opts.Drills)
	if err != nil {
		return nil, err
	}
	raw, err := config.ReadStackFile(opts.StackFile)
	if err != nil {
		return nil, err
	}
	// The rehearsal runs flannel, which kubeha supports on AWS too:
	// Cilium's images cannot be built here.
	if raw, err = withOptions(raw, "kubeha:addons", func(options map[string]any) error {
		options["cniPlugin"] = addons.CNIFlannel
		return nil
	}); err != nil {
		return nil, err
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.StackFile, err)
	}
	needed := append(slices.Clone(lab.NodeBinaries), "kube-bench", "kube-bench-cfg", "flanneld", "install-conf", "flannel-chart", "coredns", "probe")
	if err := tools.Missing(needed...); err != nil {
		logf("building the pinned binaries first (%v)", err)
		if err := tools.Build(opts.Log); err != nil {
			return nil, err
		}
		if err := tools.Missing(needed...); err != nil {
			return nil, err
		}
	}
	if len(cfg.Zones) != 3 || cfg.Etcd.Members != 3 {
		return nil, fmt.Errorf("%s: the rehearsal drills 3 zones with 3 etcd members; the stack has %d zones and %d members", opts.StackFile, len(cfg.Zones), cfg.Etcd.Members)
	}
	s := fromConfig(cfg)
	// Drill u upgrades to the stack's Kubernetes and etcd releases a
	// cluster created at the ones before, so the cluster boots at those and
	// every later drill runs on the upgraded cluster.
	if slices.ContainsFunc(selected, func(d drill) bool { return d.name == upgradeDrill }) {
		s.upgradeTo, s.etcdUpgradeTo = s.kubernetesVersion, s.etcdVersion
		if s.kubernetesVersion, err = previousRelease(s.upgradeTo); err != nil {
			return nil, err
		}
		if s.etcdVersion, err = previousEtcd(s.etcdUpgradeTo); err != nil {
			return nil, err
		}
		raw = maps.Clone(raw)
		raw[kubernetesVersionKey] = s.kubernetesVersion
		if raw, err = withEtcdVersion(raw, s.etcdVersion); err != nil {
			return nil, err
		}
	}
	if s.rootfs, err = tools.Rootfs(opts.Log); err != nil {
		return nil, err
	}
	s.raw, s.cni = raw, cfg.Addons.CNIPlugin
	if s.declared, err = declare(raw, s.rootfs); err != nil {
		return nil, err
	}
	if s.addonImages, s.probeImage, err = addonImages(s.rootfs); err != nil {
		return nil, err
	}
	removeLeftovers(logf)
	if err := lab.MatchKubeProxyConntrack(); err != nil {
		return nil, err
	}
	if err := lab.RaiseInotifyLimits(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.WorkDir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(opts.WorkDir)

	report := &Report{Stack: opts.Stack, StartedAt: time.Now()}
	logf("setting up %s: 3 zones, etcd and a control-plane node in each, haproxy as the load balancer", s.clusterName)
	type setUpResult struct {
		c   *cluster
		err error
	}
	ready := make(chan setUpResult, 1)
	go func() {
		c, err := setUp(ctx, s, opts.WorkDir, logf)
		ready <- setUpResult{c, err}
	}()
	var c *cluster
	select {
	case r := <-ready:
		if r.err != nil {
			return nil, r.err
		}
		c = r.c
	case <-ctx.Done():
		r := <-ready // setUp cleans up after itself on error; wait for it
		if r.c != nil {
			r.c.close()
		}
		return nil, ctx.Err()
	}
	defer c.close()
	report.SetUpSeconds = time.Since(report.StartedAt).Seconds()
	report.BootSeconds, report.EtcdBootSeconds = c.boot.Seconds(), c.etcdBoot.Seconds()
	logf("cluster healthy after %.0fs", report.SetUpSeconds)
	// What `pulumi up` reads to refuse a version skew.
	parameter := bootstrap.RunningVersionParameter(s.clusterName)
	if v, ok := c.cloud.Parameter(parameter); !ok || v != s.kubernetesVersion {
		return report, fmt.Errorf("the control plane records Kubernetes %q in SSM %s, want %s", v, parameter, s.kubernetesVersion)
	}
	report.KubernetesVersion = s.kubernetesVersion
	logf("the control plane records Kubernetes %s in SSM %s", s.kubernetesVersion, parameter)
	waitNever := func() (Drill, error) { return Drill{}, nil }
	if slices.ContainsFunc(selected, func(d drill) bool { return d.name == neverDrill.name }) {
		logf("drill %s: %s", neverDrill.name, neverDrill.description)
		var stopNever func()
		if waitNever, stopNever, err = c.neverBootstraps(); err != nil {
			return report, fmt.Errorf("drill %s: %w", neverDrill.name, err)
		}
		defer stopNever()
	}
	// Workers boot meanwhile; the first one's join is checked after the
	// join token's rotation, which must leave its own token alone.
	workersLaunched, err := c.launchWorkers()
	if err != nil {
		return report, fmt.Errorf("launching the workers: %w", err)
	}
	if report.KubeletCertificates, err = c.checkKubeletCertificates(); err != nil {
		return report, fmt.Errorf("kubelet serving certificates: %w", err)
	}
	logf("kubelet serving certificates from the cluster CA, verified by the API servers; a node's requests for another node denied")
	if report.CertificateDaysLeft, err = c.certificateDaysLeft(); err != nil {
		return report, err
	}
	if report.KubeProxy, err = c.checkKubeProxy(); err != nil {
		return report, fmt.Errorf("kube-proxy: %w", err)
	}
	logf("kube-proxy Ready on every control-plane node, the kubernetes Service in each node's iptables")
	if report.WorkloadIdentity, err = c.checkWorkloadIdentity(); err != nil {
		return report, fmt.Errorf("workload identity: %w", err)
	}
	logf("a pod on %s reaches no node role; a service-account token verifies against the issuer bucket's documents", nodeName(0))
	if err := c.checkBaseline(); err != nil {
		return report, fmt.Errorf("security baseline: %w", err)
	}
	logf("security baseline held: anonymous requests refused, Secrets encrypted in etcd and audited without payload, join token never expires")
	if report.Benchmark, err = c.benchmark(); err != nil {
		return report, err
	}
	logf("kube-bench %s: automated checks passed %v, failed %v (known gaps: %d)", report.Benchmark.Benchmark, report.Benchmark.Passed, report.Benchmark.Failed, len(report.Benchmark.Gaps))
	if report.Addons, err = c.drillAddons(); err != nil {
		return report, fmt.Errorf("add-on set: %w", err)
	}
	if report.JoinToken, err = c.rotateJoinToken(); err != nil {
		return report, fmt.Errorf("join token rotation: %w", err)
	}
	logf("join token rotated to generation %d: the cluster held only the new token %.1fs after the sync started; the old one gets HTTP %d, the new one is %s",
		report.JoinToken.Generation, report.JoinToken.SyncSeconds, report.JoinToken.OldTokenStatus, report.JoinToken.NewTokenUser)
	if report.WorkerJoin, err = c.checkWorkerJoin(); err != nil {
		return report, fmt.Errorf("a worker's own join token: %w", err)
	}
	logf("a worker's own join token made %.1fs after it was handed over; its client certificate for %s denied, for its own node signed", report.WorkerJoin.MintSeconds, nodeName(0))
	if report.WorkerBoot, err = c.checkWorker(workersLaunched); err != nil {
		return report, fmt.Errorf("%s: %w", workerName(0), err)
	}
	logf("%s booted from its user-data and joined as %s %.0fs after its launch", workerName(0), report.WorkerBoot.ClientCertificate, report.WorkerBoot.JoinedSeconds)
	if report.DataPlane, err = c.startDataPlane(s.cni, workersLaunched); err != nil {
		return report, fmt.Errorf("data plane: %w", err)
	}
	logf("data plane: every node Ready on %s %.0fs after the workers' launch; CoreDNS by zone %s; the probe Deployment, spread by the scheduler's defaults alone, %s; clients %v answered",
		report.DataPlane.CNI, report.DataPlane.ReadySeconds, perZone(report.DataPlane.CoreDNSPerZone), perZone(report.DataPlane.ProbePerZone), report.DataPlane.Clients)
	if opts.LatencyMs > 0 {
		if err := c.addLatency(opts.LatencyMs); err != nil {
			return nil, err
		}
	}

	p := c.startProbe()
	defer p.close()
	// Steady traffic before the first fault.
	time.Sleep(3 * time.Second)
	for _, d := range selected {
		if d.name == neverDrill.name {
			continue // it runs alongside the others
		}
		if err := ctx.Err(); err != nil {
			return report, err
		}
		logf("drill %s: %s", d.name, d.description)
		// A kubelet whose API server was cut from etcd (d-tcp) may still
		// be NotReady, its pods out of the Service: a drill that began then
		// would measure the last one's damage. Drill e begins with zone a
		// still cut by c.
		if d.name != "e" {
			if err := c.dataPlaneSettled(); err != nil {
				return report, fmt.Errorf("drill %s: %w", d.name, err)
			}
		}
		podsBefore, podsErr := c.probePodsPerZone()
		started := time.Now()
		result, err := d.run(ctx, c, p)
		result.Name, result.Description = d.name, d.description
		if err == nil {
			err = podsErr
		}
		// Drill u drains the workers the probe's clients run on: they
		// start again after it, with no log of the upgrade.
		if err == nil && d.name != upgradeDrill {
			result.Service, err = c.drillTraffic(started, podsBefore)
		}
		if result.HealthCheck == "" {
			result.HealthCheck = c.check
		}
		report.Drills = append(report.Drills, result)
		if err != nil {
			return report, fmt.Errorf("drill %s: %w", d.name, err)
		}
		service := "not measured: the drains took its clients"
		if s := result.Service; s != nil {
			service = fmt.Sprintf("%d of %d calls failed, error window %.1fs, pods by zone %s then %s", s.Failures, s.Requests, s.ErrorWindowSeconds, perZone(s.PodsBefore), perZone(s.PodsAfter))
		}
		logf("drill %s: longest gap %.1fs, %d of %d requests failed, recovered: %s; the probe Service: %s", d.name,
			result.LongestGapSeconds, result.Failures, result.Requests, recovery(result.RecoverySeconds), service)
	}
	if slices.ContainsFunc(selected, func(d drill) bool { return d.name == neverDrill.name }) {
		result, err := waitNever()
		result.Name, result.Description, result.HealthCheck = neverDrill.name, neverDrill.description, c.check
		report.Drills = append(report.Drills, result)
		if err != nil {
			return report, fmt.Errorf("drill %s: %w", neverDrill.name, err)
		}
		logf("drill %s: %s", neverDrill.name, result.Notes)
	}
	p.close()
	// Drill u moved it.
	report.KubernetesVersion, _ = c.cloud.Parameter(parameter)
	report.OutsideNames = c.outsideNames()
	lost, err := p.lostWrites()
	if err != nil {
		return report, err
	}
	report.LostWrites, report.Writes = len(lost), len(p.acked)
	report.TotalSeconds = time.Since(report.StartedAt).Seconds()
	if len(lost) > 0 {
		return report, fmt.Errorf("%d acknowledged writes lost, e.g. %s", len(lost), lost[0])
	}
	return report, nil
}

// removeLeftovers deletes the namespaces of a rehearsal that was killed
// before it could clean up, so that a new one starts clean.
func removeLeftovers(logf func(string, ...any)) {
	for _, what := range lab.RemoveLeftovers(labPrefix) {
		logf("removing %s, left by an earlier run", what)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], labPrefix+"-") {
			logf("removing %s, left by an earlier run", f[0])
			// Its processes (haproxy) first: deleting a namespace ends none.
			pids, _ := exec.Command("ip", "netns", "pids", f[0]).Output()
			for _, pid := range strings.Fields(string(pids)) {
				_ = exec.Command("kill", "-KILL", pid).Run()
			}
			_ = exec.Command("ip", "netns", "del", f[0]).Run()
			_ = os.RemoveAll("/etc/netns/" + f[0])
		}
	}
	_ = exec.Command("ip", "link", "del", labPrefix+"-m").Run()
}

// addLatency delays traffic between zones: netem on each zone's bridge in
// the hub applies to what the hub routes into the zone, not to traffic
// within it.
func (c *cluster) addLatency(ms int) error {
	for i := range c.members {
		dev := fmt.Sprintf("zone%d", i)
		cmd := exec.Command("ip", "netns", "exec", labPrefix+"-hub", "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", fmt.Sprintf("%dms", ms))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("adding %dms between zones (tc netem; the kernel needs sch_netem): %v: %s", ms, err, out)
		}
	}
	return nil
}

// WriteTable prints the report for a person.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "drill\thealth check\tlongest API gap\terrors\terror window\tp50/p99\tscheduler lease\tcontroller-manager lease\tetcd leader\tout of rotation\trecovery\t(bound)\treplacement in service\tlost writes")
	for _, d := range r.Drills {
		// A drill the probe did not measure (i runs alongside the others)
		// has no recovery of its own.
		rec := recovery(d.RecoverySeconds)
		if d.Requests == 0 {
			rec = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1fs\t%d/%d (%.1f%%)\t%.1fs\t%.2fs/%.2fs\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", d.Name, d.HealthCheck, d.LongestGapSeconds,
			d.Failures, d.Requests, 100*d.ErrorRate, d.ErrorWindowSeconds, d.LatencySeconds["p50"], d.LatencySeconds["p99"],
			secs(d.SchedulerLeaseSeconds), secs(d.ControllerManagerLeaseSecs),
			secs(d.EtcdLeaderSeconds), secs(d.RemovalSeconds), rec, secs(d.RecoveryBoundSeconds),
			secs(d.ReplacementInServiceSeconds), d.LostWrites)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range r.Drills {
		if d.Notes != "" {
			fmt.Fprintf(w, "%s: %s\n", d.Name, d.Notes)
		}
	}
	for _, d := range r.Drills {
		if u := d.Upgrade; u != nil {
			fmt.Fprintf(w, "\nupgrade %s to %s, etcd %s to %s: %.0fs in all (pulumi up %.0fs: %d of %d requests failed); kubeha upgrade: %d of %d requests failed (%.2f%%), stopped and resumed: %v, %d between replacements\n",
				u.From, u.To, u.EtcdFrom, u.EtcdTo, u.TotalSeconds, u.PulumiUp.Seconds, u.PulumiUp.Failures, u.PulumiUp.Requests, d.Failures, d.Requests, 100*d.ErrorRate, u.StoppedAndResumed, u.FailuresBetweenReplacements)
			for _, n := range u.Nodes {
				role := "worker"
				if n.EtcdMember {
					role = "etcd member"
				} else if n.ControlPlane {
					role = "control plane"
				}
				fmt.Fprintf(w, "  %s (%s, %s): %.0fs, %d of %d requests failed, error window %.1fs\n", n.Name, role, n.Zone, n.Seconds, n.Failures, n.Requests, n.ErrorWindowSeconds)
			}
			fmt.Fprintf(w, "  longest unheld Lease %v; %d skew samples, broken %d %v; versions (API servers; kubelets) %v\n",
				u.LongestUnheldLeaseSeconds, u.SkewSamples, len(u.SkewViolations), u.SkewViolations, u.Versions)
		}
	}
	dp := r.DataPlane
	fmt.Fprintf(w, "\ndata plane: every node Ready on %s %.0fs after the workers' launch; ready pods by zone: CoreDNS %s, the probe Deployment %s (the scheduler's default spread alone)\n",
		dp.CNI, dp.ReadySeconds, perZone(dp.CoreDNSPerZone), perZone(dp.ProbePerZone))
	for _, d := range r.Drills {
		if s := d.Service; s != nil {
			fmt.Fprintf(w, "  service %s: %d of %d calls from %v failed, error window %.1fs; probe pods by zone %s, then %s; rescheduled after %s; Ready throughout %v\n",
				d.Name, s.Failures, s.Requests, s.Clients, s.ErrorWindowSeconds, perZone(s.PodsBefore), perZone(s.PodsAfter), secs(d.PodsRescheduledSeconds), s.WorkersStayedReady)
		}
		if s := d.Scheduling; s != nil {
			fmt.Fprintf(w, "  scheduling %s: %d pods created one after another (%d creations retried), each ready; the longest took %.0fs to be scheduled, %.0fs to be ready\n",
				d.Name, s.Pods, s.CreateRetries, s.LongestScheduledSeconds, s.LongestReadySeconds)
		}
	}
	a := r.Addons
	fmt.Fprintf(w, "\nadd-ons: the control plane applied the %d-step set %.0fs after the nodes launched; a chart version changed in the stack ran %.0fs after upload "+
		"(%v switched off with it: uninstalled); a deleted release was back in %.0fs; %d runs held the lease, %d found it held, %d overlapped.\n",
		a.Steps, a.AppliedSeconds, a.BumpSeconds, a.Uninstalled, a.ReinstallSeconds, a.Runs, a.Refused, a.Overlapping)
	b := r.Benchmark
	fmt.Fprintf(w, "kube-bench %s, automated checks: passed %v, failed %v\n", b.Benchmark, b.Passed, b.Failed)
	for _, gap := range b.Gaps {
		fmt.Fprintf(w, "  gap %s\n", gap)
	}
	j := r.JoinToken
	fmt.Fprintf(w, "join token: rotated to generation %d, the cluster held only the new token %.1fs after the sync started; the old token gets HTTP %d, the new one authenticates as %s; later replacements joined with it.\n",
		j.Generation, j.SyncSeconds, j.OldTokenStatus, j.NewTokenUser)
	k := r.KubeletCertificates
	fmt.Fprintf(w, "kubelet certificates: %d kubelets serve one of the cluster CA for their address, %d reached by API servers that verify them; a node's requests for another node denied within %.1fs:\n",
		k.Verified, k.Proxied, k.DecisionSeconds)
	for _, name := range slices.Sorted(maps.Keys(k.Denied)) {
		fmt.Fprintf(w, "  denied %s: %s\n", name, k.Denied[name])
	}
	fmt.Fprintf(w, "certificate renewal checks: days left on each node's shortest-lived certificate %v\n", r.CertificateDaysLeft)
	kp := r.KubeProxy
	fmt.Fprintf(w, "kube-proxy: ready %v, restarts %v, the kubernetes Service in each node's iptables %v, %.0fs after the check began\n",
		kp.Ready, kp.Restarts, kp.Programmed, kp.ReadySeconds)
	wi := r.WorkloadIdentity
	fmt.Fprintf(w, "workload identity: at hop limit %d, %s got role %s from its metadata service, a pod on it none (%s); a token for %s signed by key %s verified with the documents of issuer %s alone; the API servers serve the same keys: %v\n",
		wi.HopLimit, nodeName(0), wi.NodeRole, wi.PodRefused, wi.Subject, wi.KeyID, wi.Issuer, wi.ServedKeys)
	wj := r.WorkerJoin
	fmt.Fprintf(w, "worker join token: made %.1fs after the worker handed it over, authenticating as %s in %v; kubeadm join's reads %v, cluster-info signed: %v\n",
		wj.MintSeconds, wj.User, wj.Groups, wj.Reads, wj.Signed)
	fmt.Fprintf(w, "  denied its client certificate for another node: %s\n  signed its own: %s\n", wj.OtherNode.Message, wj.OwnNode)
	fmt.Fprintf(w, "worker boot: %s joined with its own token as %s, %.0fs after its launch; %s\n",
		workerName(0), r.WorkerBoot.ClientCertificate, r.WorkerBoot.JoinedSeconds, r.WorkerBoot.Approved)
	_, err := fmt.Fprintf(w, "%d acknowledged writes, %d lost. Every node booted from nothing and the cluster whole in %.0fs (etcd in %.0fs); total %.0fs.\n",
		r.Writes, r.LostWrites, r.BootSeconds, r.EtcdBootSeconds, r.TotalSeconds)
	return err
}

// secs shows a measured duration, or "-" where there was none to measure.
func secs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fs", *v)
}

// recovery shows a recovery time, or "never".
func recovery(v *float64) string {
	if v == nil {
		return "never"
	}
	return secs(v)
}

// WriteJSON writes the report as rehearsal-report.json does.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
