package components

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
)

// ClusterArgs describes a whole cluster. Only ClusterName, Region and Zones
// are required.
//
// Each component's args sit here as they are. Cluster fills in the fields
// that wire components together (name, region, zones, VPC, subnets, KMS
// key, tags, sibling components) and kubeha's HA defaults, but only where a
// field is left zero: whatever an importer sets is kept. Setting
// Network.Existing runs the cluster in the importer's own VPC.
type ClusterArgs struct {
	ClusterName string
	Region      string
	// Zones hold one etcd member, one control-plane node and one group per
	// worker pool each; at least 3.
	Zones []string
	// KubernetesVersion defaults to config.Default's.
	KubernetesVersion string
	// Unprotected lets `pulumi destroy` delete the KMS key, the network, the
	// backups and the load balancer. Off by default.
	Unprotected bool
	// KMSKeyArn is a key of the importer's; without it Cluster makes one.
	KMSKeyArn pulumi.StringInput
	// Tags are added to every resource.
	Tags map[string]string

	Network             NetworkArgs
	Etcd                EtcdClusterArgs
	LoadBalancer        ApiLoadBalancerArgs
	ControlPlane        ControlPlaneArgs
	WorkerSecurityGroup WorkerSecurityGroupArgs
	// Workers has one entry per pool, each declared once per zone with Zone
	// and SubnetID filled in. A pool with Min, Desired and Max all 0 gets
	// config.DefaultWorkerPool's sizes. Empty means one default pool.
	Workers []ZonalWorkerGroupArgs
	// Addons switches add-ons off or changes them; by default every one is
	// installed, with Prometheus for monitoring.
	Addons AddonsArgs
	// NoAddons installs none and makes no alarms: for importers who run
	// their own. The nodes stay NotReady until a CNI is installed.
	NoAddons bool
}

// Cluster is a whole HA cluster. Every child component is here, so an
// importer can attach its own resources to any of them.
type Cluster struct {
	pulumi.ResourceState

	Network      *Network
	Key          *kms.Key // nil when ClusterArgs.KMSKeyArn was given
	Etcd         *EtcdCluster
	LoadBalancer *ApiLoadBalancer
	ControlPlane *ControlPlane
	// WorkerSecurityGroupID is the group every worker is in.
	WorkerSecurityGroupID pulumi.StringOutput
	// WorkerGroups maps a pool's name to its groups, in zone order.
	WorkerGroups map[string][]*ZonalWorkerGroup
	// Addons is nil with ClusterArgs.NoAddons.
	Addons *Addons

	// Endpoint and Kubeconfig (secret) are the ControlPlane's.
	Endpoint   pulumi.StringOutput
	Kubeconfig pulumi.StringOutput
}

// NewCluster declares the network, the KMS key, etcd, the API load
// balancer, the control plane and every worker pool in every zone. Every
// component's args are checked first, so a bad field fails the cluster
// before anything is declared.
func NewCluster(ctx *pulumi.Context, name string, given *ClusterArgs, opts ...pulumi.ResourceOption) (*Cluster, error) {
	// Defaults go into a copy: the caller's args stay as they were.
	args := *given
	args.Workers = slices.Clone(given.Workers)
	if err := args.validate(); err != nil {
		return nil, err
	}
	if err := args.preflight(); err != nil {
		return nil, err
	}
	c := &Cluster{WorkerGroups: map[string][]*ZonalWorkerGroup{}}
	if err := ctx.RegisterComponentResource("kubeha:index:Cluster", name, c, opts...); err != nil {
		return nil, err
	}
	child := pulumi.Parent(c)

	network, err := NewNetwork(ctx, name+"-network", args.networkArgs(), child)
	if err != nil {
		return nil, err
	}
	c.Network = network
	w := wiring{
		vpcID: network.VpcID, vpcCidr: network.VpcCidr, natIPs: network.NatPublicIPs, key: args.KMSKeyArn,
		private: outputsAsInputs(network.PrivateSubnetIDs), public: outputsAsInputs(network.PublicSubnetIDs),
	}
	if w.key == nil {
		if c.Key, err = clusterKey(ctx, name, args.ClusterName, args.tags(nil), !args.Unprotected, child); err != nil {
			return nil, err
		}
		w.key = c.Key.Arn
	}
	if c.Etcd, err = NewEtcdCluster(ctx, name+"-etcd", args.etcdArgs(w), child); err != nil {
		return nil, err
	}
	if c.LoadBalancer, err = NewApiLoadBalancer(ctx, name+"-api", args.loadBalancerArgs(w), child); err != nil {
		return nil, err
	}
	w.etcd, w.loadBalancer = c.Etcd, c.LoadBalancer
	// etcd's clients start once every member is up.
	c.ControlPlane, err = NewControlPlane(ctx, name+"-control-plane", args.controlPlaneArgs(w), child, pulumi.DependsOn([]pulumi.Resource{c.Etcd}))
	if err != nil {
		return nil, err
	}
	c.Endpoint, c.Kubeconfig = c.ControlPlane.Endpoint, c.ControlPlane.Kubeconfig
	w.controlPlane = c.ControlPlane
	workerGroup, err := NewWorkerSecurityGroup(ctx, name+"-workers", args.workerSecurityGroupArgs(w), child)
	if err != nil {
		return nil, err
	}
	c.WorkerSecurityGroupID = workerGroup.ID().ToStringOutput()
	w.workerGroup = c.WorkerSecurityGroupID
	for _, pool := range args.Workers {
		for i, zone := range args.Zones {
			group, err := NewZonalWorkerGroup(ctx, name+"-"+pool.Pool+"-"+zone, args.workerArgs(pool, i, w), child)
			if err != nil {
				return nil, err
			}
			c.WorkerGroups[pool.Pool] = append(c.WorkerGroups[pool.Pool], group)
		}
	}
	if args.NoAddons {
		return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"endpoint": c.Endpoint, "kubeconfig": c.Kubeconfig})
	}
	if args.prometheus() {
		if err := prometheusReach(ctx, name, c, child); err != nil {
			return nil, err
		}
	}
	if c.Addons, err = NewAddons(ctx, name+"-addons", args.addonsArgs(w, c.groups()), child); err != nil {
		return nil, err
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"endpoint": c.Endpoint, "kubeconfig": c.Kubeconfig})
}

// wiring is what components take from each other.
type wiring struct {
	vpcID, vpcCidr, key pulumi.StringInput
	private, public     []pulumi.StringInput
	natIPs              []pulumi.StringOutput
	etcd                *EtcdCluster
	loadBalancer        *ApiLoadBalancer
	controlPlane        *ControlPlane
	workerGroup         pulumi.StringInput
}

// preflight runs every component's own checks on its args, wired with
// placeholders, so a bad field fails before any resource is declared.
func (args *ClusterArgs) preflight() error {
	if _, err := args.networkArgs().validate(); err != nil {
		return err
	}
	pending := pulumi.String("pending")
	w := wiring{vpcID: pending, vpcCidr: pending, key: pending, workerGroup: pending,
		etcd: &EtcdCluster{}, loadBalancer: &ApiLoadBalancer{}, controlPlane: &ControlPlane{}}
	w.private, w.public = make([]pulumi.StringInput, len(args.Zones)), make([]pulumi.StringInput, len(args.Zones))
	if e := args.Network.Existing; e != nil {
		w.public = make([]pulumi.StringInput, len(e.PublicSubnetIDs))
	}
	for i := range w.private {
		w.private[i] = pending
	}
	for i := range w.public {
		w.public[i] = pending
	}
	checks := []func() error{args.etcdArgs(w).validate, args.loadBalancerArgs(w).validate, args.controlPlaneArgs(w).validate}
	if !args.NoAddons {
		checks = append(checks, args.addonsArgs(w, nil).validate)
	}
	for _, pool := range args.Workers {
		checks = append(checks, args.workerArgs(pool, 0, w).validate)
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (args *ClusterArgs) tags(own map[string]string) map[string]string {
	merged := map[string]string{}
	maps.Copy(merged, args.Tags)
	maps.Copy(merged, own)
	return merged
}

func (args *ClusterArgs) networkArgs() *NetworkArgs {
	n := args.Network
	n.ClusterName, n.Region, n.Zones, n.Protect, n.Tags = args.ClusterName, args.Region, args.Zones, !args.Unprotected, args.tags(n.Tags)
	fill(&n.VpcCidr, config.Default().Network.VpcCidr)
	return &n
}

func (args *ClusterArgs) etcdArgs(w wiring) *EtcdClusterArgs {
	e, d := args.Etcd, config.Default().Etcd
	e.ClusterName, e.Region, e.Zones, e.Protect, e.Tags = args.ClusterName, args.Region, args.Zones, !args.Unprotected, args.tags(e.Tags)
	fillInputs(&e.SubnetIDs, w.private)
	fillInput(&e.VpcID, w.vpcID)
	fillInput(&e.KMSKeyArn, w.key)
	fill(&e.Members, d.Members)
	fill(&e.InstanceType, d.InstanceType)
	fill(&e.VolumeSizeGiB, d.VolumeSizeGiB)
	fill(&e.BackupIntervalMinutes, d.BackupIntervalMinutes)
	fill(&e.BackupRetentionDays, d.BackupRetentionDays)
	return &e
}

func (args *ClusterArgs) loadBalancerArgs(w wiring) *ApiLoadBalancerArgs {
	lb := args.LoadBalancer
	lb.ClusterName, lb.Protect, lb.Tags = args.ClusterName, !args.Unprotected, args.tags(lb.Tags)
	fillInput(&lb.VpcID, w.vpcID)
	fillInput(&lb.VpcCidr, w.vpcCidr)
	if lb.Public {
		// Nodes reach a public endpoint from their NAT addresses.
		fillInputs(&lb.SubnetIDs, w.public)
		if lb.ExtraAllowedIPs == nil {
			lb.ExtraAllowedIPs = w.natIPs
		}
	} else {
		fillInputs(&lb.SubnetIDs, w.private)
	}
	fill(&lb.DeregistrationDelaySeconds, config.Default().API.DeregistrationDelaySeconds)
	return &lb
}

func (args *ClusterArgs) controlPlaneArgs(w wiring) *ControlPlaneArgs {
	cp, d := args.ControlPlane, config.Default()
	cp.ClusterName, cp.Region, cp.Zones, cp.Tags = args.ClusterName, args.Region, args.Zones, args.tags(cp.Tags)
	cp.Etcd, cp.LoadBalancer = w.etcd, w.loadBalancer
	fillInputs(&cp.SubnetIDs, w.private)
	fillInput(&cp.VpcID, w.vpcID)
	fillInput(&cp.KMSKeyArn, w.key)
	fill(&cp.KubernetesVersion, args.KubernetesVersion)
	fill(&cp.InstanceType, d.ControlPlane.InstanceType)
	fill(&cp.PodCIDR, d.Network.PodCidr)
	fill(&cp.ServiceCIDR, d.Network.ServiceCidr)
	if !args.NoAddons {
		cp.SkipCoreDNS = !args.Addons.CoreDNS.Disabled
		cp.ServeMetrics = args.prometheus()
		cp.ManagedPolicyArns = append(cp.ManagedPolicyArns, args.cloudWatchPolicies()...)
	}
	return &cp
}

// prometheus says whether Prometheus runs in the cluster.
func (args *ClusterArgs) prometheus() bool {
	return !args.NoAddons && !args.Addons.MonitoringChart.Disabled && cmp.Or(args.Addons.Monitoring, MonitoringPrometheus) == MonitoringPrometheus
}

// cloudWatchPolicies are what nodes need for the CloudWatch agent.
func (args *ClusterArgs) cloudWatchPolicies() []string {
	if args.NoAddons || args.Addons.MonitoringChart.Disabled || args.Addons.Monitoring != MonitoringCloudWatch {
		return nil
	}
	return []string{CloudWatchAgentPolicy}
}

func (args *ClusterArgs) addonsArgs(w wiring, groups map[string]pulumi.StringInput) *AddonsArgs {
	a := args.Addons
	a.ClusterName, a.Region, a.Zones, a.Tags = args.ClusterName, args.Region, args.Zones, args.tags(a.Tags)
	a.ControlPlane, a.Etcd, a.LoadBalancer, a.Groups = w.controlPlane, w.etcd, w.loadBalancer, groups
	cp, e := args.controlPlaneArgs(w), args.etcdArgs(w)
	fill(&a.KubernetesVersion, cp.KubernetesVersion)
	fill(&a.PodCIDR, cp.PodCIDR)
	fill(&a.ServiceCIDR, cp.ServiceCIDR)
	fill(&a.BackupIntervalMinutes, e.BackupIntervalMinutes)
	return &a
}

// groups are every auto-scaling group, by a name for its alarm.
func (c *Cluster) groups() map[string]pulumi.StringInput {
	groups := map[string]pulumi.StringInput{}
	for i, g := range c.Etcd.Groups {
		groups[c.Etcd.Members[i].Name] = g.Name
	}
	for i, g := range c.ControlPlane.Groups {
		groups["control-plane-"+c.Network.Zones[i]] = g.Name
	}
	for pool, zonal := range c.WorkerGroups {
		for i, g := range zonal {
			groups[pool+"-"+c.Network.Zones[i]] = g.GroupName
		}
	}
	return groups
}

// prometheusReach lets Prometheus, which runs on workers, scrape every
// node's kubelet (10250) and node-exporter (9100), the schedulers and
// controller-managers, and etcd's TLS metrics port. Each still
// authenticates the scraper.
func prometheusReach(ctx *pulumi.Context, name string, c *Cluster, opt pulumi.ResourceOption) error {
	workers, opts := c.WorkerSecurityGroupID, []pulumi.ResourceOption{opt}
	scrape := func(port int, what string) groupRule {
		return groupRule{Name: what + "-from-prometheus", Port: port, From: workers}
	}
	if err := allowFromGroups(ctx, name+"-workers-prometheus", workers, []groupRule{
		scrape(kubeletPort, "kubelet"), scrape(nodeExporterPort, "node-exporter"),
	}, opts); err != nil {
		return err
	}
	if err := allowFromGroups(ctx, name+"-control-plane-prometheus", c.ControlPlane.SecurityGroupID, []groupRule{
		scrape(kubeletPort, "kubelet"), scrape(nodeExporterPort, "node-exporter"),
		scrape(controllerManagerPort, "controller-manager"), scrape(schedulerPort, "scheduler"),
	}, opts); err != nil {
		return err
	}
	return allowFromGroups(ctx, name+"-etcd-prometheus", c.Etcd.SecurityGroupID, []groupRule{
		scrape(bootstrap.EtcdTLSMetricsPort, "etcd-metrics"),
	}, opts)
}

// Ports Prometheus scrapes.
const (
	nodeExporterPort      = 9100
	controllerManagerPort = 10257
	schedulerPort         = 10259
)

func (args *ClusterArgs) workerSecurityGroupArgs(w wiring) *WorkerSecurityGroupArgs {
	sg := args.WorkerSecurityGroup
	sg.ClusterName, sg.Tags = args.ClusterName, args.tags(sg.Tags)
	fillInput(&sg.VpcID, w.vpcID)
	fillInput(&sg.VpcCidr, w.vpcCidr)
	fillInput(&sg.ControlPlaneSecurityGroupID, w.controlPlane.SecurityGroupID)
	return &sg
}

// workerArgs is pool's group in the zone at index zone.
func (args *ClusterArgs) workerArgs(pool ZonalWorkerGroupArgs, zone int, w wiring) *ZonalWorkerGroupArgs {
	pool.ClusterName, pool.Region, pool.Zone, pool.Tags = args.ClusterName, args.Region, args.Zones[zone], args.tags(pool.Tags)
	pool.ControlPlane, pool.SubnetID = w.controlPlane, w.private[zone]
	pool.SecurityGroupIDs = append([]pulumi.StringInput{w.workerGroup}, pool.SecurityGroupIDs...)
	fillInput(&pool.KMSKeyArn, w.key)
	fill(&pool.KubernetesVersion, args.ControlPlane.KubernetesVersion)
	fill(&pool.KubernetesVersion, args.KubernetesVersion)
	pool.ManagedPolicyArns = append(slices.Clone(pool.ManagedPolicyArns), args.cloudWatchPolicies()...)
	return &pool
}

// validate checks what Cluster itself needs and fills the top-level and
// worker pool defaults; each component checks the rest of its own args.
func (args *ClusterArgs) validate() error {
	bad := func(field, value, allowed string) error {
		return &config.FieldError{Key: "ClusterArgs." + field, Value: value, Allowed: allowed}
	}
	fill(&args.KubernetesVersion, config.Default().KubernetesVersion)
	if len(args.Workers) == 0 {
		args.Workers = []ZonalWorkerGroupArgs{{}}
	}
	seen := map[string]bool{}
	for i := range args.Workers {
		w := &args.Workers[i]
		d := config.DefaultWorkerPool()
		fill(&w.Pool, d.Name)
		if len(w.InstanceTypes) == 0 {
			w.InstanceTypes = d.InstanceTypes
		}
		if w.Min == 0 && w.Desired == 0 && w.Max == 0 {
			w.Min, w.Desired, w.Max = d.MinPerZone, d.DesiredPerZone, d.MaxPerZone
		}
		if seen[w.Pool] {
			return bad(fmt.Sprintf("Workers[%d].Pool", i), fmt.Sprintf("%q", w.Pool), "a name no other pool uses")
		}
		seen[w.Pool] = true
	}
	switch {
	case args.ClusterName == "" || args.Region == "":
		return bad("ClusterName/Region", fmt.Sprintf("%q/%q", args.ClusterName, args.Region), "both set")
	case len(args.Zones) < 3:
		return bad("Zones", fmt.Sprintf("%q", args.Zones), "at least 3 zones, so the cluster survives losing one")
	}
	return nil
}

// clusterKey is the KMS key that encrypts the cluster's secrets and
// backups. Losing it loses them, so it is protected like the data.
func clusterKey(ctx *pulumi.Context, name, cluster string, tags map[string]string, protect bool, parent pulumi.ResourceOption) (*kms.Key, error) {
	key, err := kms.NewKey(ctx, name+"-key", &kms.KeyArgs{
		Description:          pulumi.String("kubeha cluster " + cluster + ": secrets and etcd backups"),
		EnableKeyRotation:    pulumi.Bool(true),
		DeletionWindowInDays: pulumi.Int(30),
		Tags:                 clusterTags(cluster, name+"-key", tags),
	}, parent, pulumi.Protect(protect))
	if err != nil {
		return nil, err
	}
	_, err = kms.NewAlias(ctx, name+"-key", &kms.AliasArgs{
		Name: pulumi.String("alias/" + cluster), TargetKeyId: key.KeyId,
	}, parent)
	return key, err
}

// fill sets *field to value when it is zero.
func fill[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

func fillInput(field *pulumi.StringInput, value pulumi.StringInput) {
	if *field == nil {
		*field = value
	}
}

func fillInputs(field *[]pulumi.StringInput, value []pulumi.StringInput) {
	if len(*field) == 0 {
		*field = value
	}
}

// outputsAsInputs turns outputs into inputs.
func outputsAsInputs(values []pulumi.StringOutput) []pulumi.StringInput {
	out := make([]pulumi.StringInput, len(values))
	for i, v := range values {
		out[i] = v
	}
	return out
}
