package components

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// ClusterArgs describes a whole cluster: every option of every component,
// and nothing that wires them together; Cluster does that. A stack file's
// keys decode into this same type (the json tags are the keys), so a
// stack and a Go program get the same defaults and the same refusals.
// Zero fields take the defaults named Default*; a pointer field is nil
// when unset, so that its zero value can be chosen.
type ClusterArgs struct {
	// Region is the AWS region (a stack's aws:region); every zone must be in it.
	Region string `json:"-" required:"true"`
	// ClusterName names every resource and forms the kubernetes.io/cluster/<name> tag: 2 to 28 of a-z, 0-9 and '-', starting with a letter.
	ClusterName string `json:"clusterName" required:"true"`
	// Environment is dev, staging or prod. prod enforces a NAT gateway per zone, deletion protection and no 0.0.0.0/0 allowlist.
	Environment string `json:"environment" required:"true"`
	// Zones are 3 to 6 availability zones of the region, each holding one etcd member, one control-plane node and one auto-scaling group per worker pool.
	Zones []string `json:"zones" required:"true"`
	// KubernetesVersion is the release the control plane and workers run, vMAJOR.MINOR.PATCH: one whose node binaries and images kubeha pins (v1.35.8 or v1.36.3), unless Assets brings another's. It may move one minor up from the version the running control plane records, never down.
	KubernetesVersion string `json:"kubernetesVersion"`
	// RunningKubernetesVersion is the release every API server runs, as the cluster records it (the SSM parameter RunningVersionParameter names: written when the cluster is created, moved by `kubeha upgrade`), read by the stack program before anything is declared; empty for a cluster not created yet. A KubernetesVersion below it, or more than one minor above, is refused. One minor above it starts an upgrade: new nodes install the new release but hold their kubelets at this one until `kubeha upgrade` has moved every API server.
	RunningKubernetesVersion string `json:"-"`
	// DeletionProtection keeps `pulumi destroy` from deleting the KMS key, the network, the etcd volumes and backups, the load balancer and the service-account issuer's bucket; nil means true. Required in prod.
	DeletionProtection *bool `json:"deletionProtection"`
	// BootstrapTimeoutMinutes is how long a new node may take to become healthy for its role (an etcd voter, a ready API server, a Ready Node) before it gives itself up and its group replaces it: 5 to 60, default 20. AWS abandons the launch 10 minutes later if the node never reports.
	BootstrapTimeoutMinutes int `json:"bootstrapTimeoutMinutes"`
	// Tags are added to every resource, and through the launch templates and auto-scaling groups to every instance and volume; at most 40, none in the aws:, kubernetes.io/ or kubeha.io/ namespaces.
	Tags map[string]string `json:"tags"`
	// KMSKeyArn is a key of the caller's for secrets and backups; without it Cluster makes one.
	KMSKeyArn    pulumi.StringInput  `json:"-"`
	Network      NetworkOptions      `json:"network"`
	LoadBalancer APIOptions          `json:"api"`
	Etcd         EtcdOptions         `json:"etcd"`
	ControlPlane ControlPlaneOptions `json:"controlPlane"`
	// Workers are the worker pools, each one auto-scaling group per zone; empty means one default pool.
	Workers []WorkerPool  `json:"workers"`
	Addons  AddonsOptions `json:"addons"`
	// NoAddons installs no add-on and makes no alarms, for callers who run their own; nodes stay NotReady until a CNI is installed.
	NoAddons bool `json:"-"`
	// IgnorePreflightErrors are kubeadm preflight checks every node may fail, e.g. SystemVerification on a kernel with cgroup v1 only; none by default.
	IgnorePreflightErrors []string `json:"-"`
	// Assets replace the binaries nodes install (bootstrap.PinnedAssets), e.g. with a mirror's copies; zero means kubeha's pins.
	Assets NodeAssetSet `json:"-"`
	// OlderAssets replace the pins of an older release nodes install (a pool's own, or RunningKubernetesVersion's during an upgrade), as Assets does the cluster's.
	OlderAssets []NodeAssetSet `json:"-"`
}

// environmentTag carries ClusterArgs.Environment on every resource.
const environmentTag = "kubeha.io/environment"

// Environments kubeha knows. prod gets the strictest checks.
const (
	EnvironmentDev     = "dev"
	EnvironmentStaging = "staging"
	EnvironmentProd    = "prod"
)

// Zone counts: 3 to survive a zone loss, and no AWS region has more than 6.
const (
	MinZones = 3
	MaxZones = 6
)

// DefaultKubernetesVersion is what a cluster runs unless told otherwise;
// SupportedKubernetesMinors are the minors whose node packages, kubeadm
// rendering and add-on images kubeha pins and tests
// (bootstrap.KubernetesReleases).
const DefaultKubernetesVersion = bootstrap.PinnedKubernetesVersion

var SupportedKubernetesMinors = bootstrap.SupportedMinors()

// DefaultBootstrapTimeoutMinutes is bootstrap.BootstrapDeadline, the time
// a node has to become healthy for its role.
const DefaultBootstrapTimeoutMinutes = int(bootstrap.BootstrapDeadline / time.Minute)

// WithDefaults is args with every unset option at its default: what
// NewCluster builds, and what the config reference shows.
func (args ClusterArgs) WithDefaults() ClusterArgs {
	args.KubernetesVersion = cmp.Or(args.KubernetesVersion, DefaultKubernetesVersion)
	args.BootstrapTimeoutMinutes = cmp.Or(args.BootstrapTimeoutMinutes, DefaultBootstrapTimeoutMinutes)
	if args.DeletionProtection == nil {
		args.DeletionProtection = pulumi.BoolRef(true)
	}
	args.Network = args.Network.withDefaults()
	args.LoadBalancer = args.LoadBalancer.withDefaults()
	args.Etcd = args.Etcd.withDefaults()
	args.ControlPlane = args.ControlPlane.withDefaults()
	pools := args.Workers
	if len(pools) == 0 {
		pools = []WorkerPool{{}}
	}
	args.Workers = make([]WorkerPool, len(pools))
	for i, p := range pools {
		args.Workers[i] = p.withDefaults()
	}
	args.Addons = args.Addons.withDefaults()
	return args
}

var regionPattern = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)

// Validate checks args with defaults filled in (WithDefaults) against
// every rule, those of each component and the environment's, and returns
// FieldErrors naming each field and its stack key, or nil.
func (args ClusterArgs) Validate() error {
	c := newChecker("")
	production := args.Environment == EnvironmentProd
	c.matches("Region", args.Region, regionPattern, "an AWS region such as eu-west-1")
	c.clusterName("ClusterName", args.ClusterName)
	c.oneOf("Environment", args.Environment, EnvironmentDev, EnvironmentStaging, EnvironmentProd)
	c.zones(args.Zones, args.Region)
	c.kubernetesVersion("KubernetesVersion", args.KubernetesVersion)
	c.upgradeFrom(args.RunningKubernetesVersion, args.KubernetesVersion)
	c.between("BootstrapTimeoutMinutes", args.BootstrapTimeoutMinutes, 5, 60)
	if production && !*args.DeletionProtection {
		c.add("DeletionProtection", "false", "true in prod")
	}
	c.tags("Tags", args.Tags)
	args.Network.check(c.at("Network"), len(args.Zones), production)
	args.LoadBalancer.check(c.at("LoadBalancer"), production)
	if e := args.Network.Existing; e != nil && args.LoadBalancer.Public {
		// Nodes reach a public endpoint from their NAT addresses, which only
		// the VPC's owner knows.
		if len(e.NodeEgressCidrs) == 0 {
			c.add("Network.Existing.NodeEgressCidrs", "empty", "the CIDRs nodes in the existing VPC reach the internet from (its NAT gateways' addresses as /32s), which a public API must admit; or LoadBalancer.Public false")
		}
		if len(e.PublicSubnetIDs) == 0 {
			c.add("Network.Existing.PublicSubnetIDs", "empty", "one public subnet per zone for a public API")
		}
	}
	args.Etcd.check(c.at("Etcd"))
	args.ControlPlane.check(c.at("ControlPlane"))
	seen := map[string]int{}
	for i, pool := range args.Workers {
		pc := c.at(fmt.Sprintf("Workers[%d]", i))
		pool.check(pc)
		pool.checkVersion(pc, "KubernetesVersion", args.KubernetesVersion)
		if args.Assets != (NodeAssetSet{}) && pool.KubernetesVersion != "" && pool.KubernetesVersion != args.Assets.KubernetesVersion {
			pc.add("KubernetesVersion", pool.KubernetesVersion, "empty: ClusterArgs.Assets brings one release, "+args.Assets.KubernetesVersion)
		}
		if first, dup := seen[pool.Name]; dup {
			pc.add("Name", quote(pool.Name), fmt.Sprintf("a name not used by Workers[%d]", first))
		}
		seen[pool.Name] = i
	}
	if !args.NoAddons {
		args.Addons.check(c.at("Addons"))
	}
	if args.Assets == (NodeAssetSet{}) {
		c.pinnedRelease("KubernetesVersion", args.KubernetesVersion)
	} else if err := args.Assets.Check(); err != nil {
		c.add("Assets", err.Error(), "every asset with a key, a source and, if upstream publishes one, the SHA-256 nodes check")
	} else {
		if len(c.errsOn("KubernetesVersion")) == 0 && args.KubernetesVersion != args.Assets.KubernetesVersion {
			c.add("KubernetesVersion", args.KubernetesVersion, args.Assets.KubernetesVersion+": the release ClusterArgs.Assets brings")
		}
		if len(c.errsOn("Etcd.Version")) == 0 && args.Assets.Etcd.Key != bootstrap.EtcdArchiveKey(args.Etcd.Version) {
			c.add("Etcd.Version", args.Etcd.Version, "the etcd release ClusterArgs.Assets brings ("+args.Assets.Etcd.Key+")")
		}
	}
	for _, e := range *c.errs {
		e.Key = StackKey(e.Field)
	}
	return c.err()
}

func (c checker) zones(zones []string, region string) {
	if len(zones) < MinZones || len(zones) > MaxZones {
		c.add("Zones", fmt.Sprintf("%d zones %q", len(zones), zones),
			fmt.Sprintf("%d to %d distinct zones of %s, so the cluster survives the loss of one", MinZones, MaxZones, cmp.Or(region, "the region")))
	}
	seen := map[string]int{}
	for i, zone := range zones {
		field := fmt.Sprintf("Zones[%d]", i)
		if first, dup := seen[zone]; dup {
			c.add(field, quote(zone), fmt.Sprintf("each zone once; it is already Zones[%d]", first))
			continue
		}
		seen[zone] = i
		if suffix, ok := strings.CutPrefix(zone, region); region != "" && (!ok || len(suffix) != 1 || suffix[0] < 'a' || suffix[0] > 'z') {
			c.add(field, quote(zone), fmt.Sprintf("a zone of %s, such as %sa", region, region))
		}
	}
}

func (c checker) kubernetesVersion(field, version string) {
	if _, ok := bootstrap.ParseVersion(version); !ok {
		c.add(field, quote(version), "vMAJOR.MINOR.PATCH such as "+DefaultKubernetesVersion)
	} else if _, err := bootstrap.ReleaseOf(version); err != nil {
		c.add(field, quote(version), "a patch release of "+strings.Join(SupportedKubernetesMinors, " or "))
	}
}

// tags: AWS allows 50 per resource and kubeha sets up to 10 of its own.
func (c checker) tags(field string, tags map[string]string) {
	if len(tags) > 40 {
		c.add(field, fmt.Sprintf("%d tags", len(tags)), "at most 40")
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		reserved := k == "Name" || strings.HasPrefix(strings.ToLower(k), "aws:") || strings.HasPrefix(k, "kubernetes.io/") || strings.HasPrefix(k, "kubeha.io/")
		switch {
		case k == "" || len(k) > 128 || reserved:
			c.add(field, quote(k), "keys of 1 to 128 characters, not Name and outside the aws:, kubernetes.io/ and kubeha.io/ namespaces")
		case len(tags[k]) > 256:
			c.add(field+"["+k+"]", quote(tags[k]), "a value of at most 256 characters")
		}
	}
}

// Finding is a valid setting that gives up high availability, shown by
// the plan and logged by `pulumi up` so that nobody runs it by accident.
type Finding struct {
	Key     string
	Setting string
	Effect  string
}

func (f Finding) String() string { return fmt.Sprintf("%s=%s: %s", f.Key, f.Setting, f.Effect) }

// NotHA lists the settings of defaulted args that do not survive the loss
// of a zone.
func (args ClusterArgs) NotHA() []Finding {
	var findings []Finding
	if args.Network.SharedNatGateway && args.Network.Existing == nil && len(args.Zones) > 0 {
		findings = append(findings, Finding{StackKey("Network.SharedNatGateway"), "true",
			"one NAT gateway, in " + args.Zones[0] + "; if that zone fails, nodes in every other zone lose outbound internet (image pulls, AWS APIs without endpoints)"})
	}
	if !slices.ContainsFunc(args.Workers, func(p WorkerPool) bool { return *p.MinPerZone > 0 }) {
		findings = append(findings, Finding{StackNamespace + ":workers[*].minPerZone", "0",
			"no pool keeps a worker in every zone; workloads wait for the autoscaler after a zone loss, and CoreDNS, one replica per zone, waits for a worker in each (the add-on applier retries until then)"})
	}
	return findings
}

// Cluster is a whole HA cluster. Every child component is here, so an
// importer can attach its own resources to any of them.
type Cluster struct {
	pulumi.ResourceState

	Network      *Network
	Key          *kms.Key // nil when ClusterArgs.KMSKeyArn was given
	Assets       *NodeAssets
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
// option is checked first, so a bad one fails the cluster before anything
// is declared; given is left as it was.
func NewCluster(ctx *pulumi.Context, name string, given *ClusterArgs, opts ...pulumi.ResourceOption) (*Cluster, error) {
	args := given.WithDefaults()
	if err := args.Validate(); err != nil {
		return nil, err
	}
	// Every resource says which environment it serves.
	args.Tags = maps.Clone(args.Tags)
	if args.Tags == nil {
		args.Tags = map[string]string{}
	}
	args.Tags[environmentTag] = args.Environment
	c := &Cluster{WorkerGroups: map[string][]*ZonalWorkerGroup{}}
	if err := ctx.RegisterComponentResource("kubeha:index:Cluster", name, c, opts...); err != nil {
		return nil, err
	}
	child := pulumi.Parent(c)
	if steps := args.UpgradeSteps(); len(steps) > 0 {
		_ = ctx.Log.Warn(strings.Join(steps, "\n"), &pulumi.LogArgs{Resource: c})
	}
	protect, prometheus := *args.DeletionProtection, !args.NoAddons && args.Addons.prometheus()

	network, err := NewNetwork(ctx, name+"-network", &NetworkArgs{NetworkOptions: args.Network,
		ClusterName: args.ClusterName, Region: args.Region, Zones: args.Zones, Protect: protect, Tags: args.Tags}, child)
	if err != nil {
		return nil, err
	}
	c.Network = network
	private, public := outputsAsInputs(network.PrivateSubnetIDs), outputsAsInputs(network.PublicSubnetIDs)
	key := args.KMSKeyArn
	if key == nil {
		if c.Key, err = clusterKey(ctx, name, args.ClusterName, args.Tags, protect, child); err != nil {
			return nil, err
		}
		key = c.Key.Arn
	}
	// The workers' group comes first: the control plane admits it, and its
	// own rules (workerRules, below) admit the control plane.
	workers, err := newSecurityGroup(ctx, name+"-workers", network.VpcID, "Kubernetes workers of "+args.ClusterName,
		clusterTags(args.ClusterName, name+"-workers", args.Tags), []pulumi.ResourceOption{child})
	if err != nil {
		return nil, err
	}
	c.WorkerSecurityGroupID = workers.ID().ToStringOutput()
	// Prometheus runs on workers.
	var scraper pulumi.StringInput
	if prometheus {
		scraper = c.WorkerSecurityGroupID
	}

	// Pools held at an older release get its assets from the same bucket.
	var older []string
	for _, pool := range args.Workers {
		if v := pool.KubernetesVersion; v != "" && v != args.KubernetesVersion && !slices.Contains(older, v) {
			older = append(older, v)
		}
	}
	assets := args.Assets
	if assets == (NodeAssetSet{}) {
		release, _ := bootstrap.ReleaseOf(args.KubernetesVersion) // Validate checked it
		assets = bootstrap.PinnedAssetsOf(release)
		assets.Etcd, _ = bootstrap.EtcdArchive(args.Etcd.Version)
	}
	if c.Assets, err = NewNodeAssets(ctx, name+"-assets", &NodeAssetsArgs{ClusterName: args.ClusterName, Assets: assets,
		OlderVersions: older, RunningVersion: args.RunningKubernetesVersion, OlderAssets: args.OlderAssets,
		Protect: protect, Tags: args.Tags}, child); err != nil {
		return nil, err
	}
	zonal := ZonalWiring{ClusterName: args.ClusterName, Region: args.Region, Zones: args.Zones, SubnetIDs: private, VpcID: network.VpcID,
		KMSKeyArn: key, Assets: c.Assets, BootstrapTimeoutMinutes: args.BootstrapTimeoutMinutes}
	if c.Etcd, err = NewEtcdCluster(ctx, name+"-etcd", &EtcdClusterArgs{EtcdOptions: args.Etcd, ZonalWiring: zonal,
		ScraperSecurityGroupID: scraper, Protect: protect, Tags: args.Tags}, child); err != nil {
		return nil, err
	}
	lb := &ApiLoadBalancerArgs{APIOptions: args.LoadBalancer, ClusterName: args.ClusterName, VpcID: network.VpcID,
		VpcCidr: network.VpcCidr, SubnetIDs: private, Protect: protect, Tags: args.Tags}
	if lb.Public {
		lb.SubnetIDs, lb.NodeEgressCidrs = public, network.NodeEgressCidrs
	}
	if c.LoadBalancer, err = NewApiLoadBalancer(ctx, name+"-api", lb, child); err != nil {
		return nil, err
	}
	// etcd's clients start once every member is up.
	c.ControlPlane, err = NewControlPlane(ctx, name+"-control-plane", &ControlPlaneArgs{ControlPlaneOptions: args.ControlPlane,
		ZonalWiring: zonal, KubernetesVersion: args.KubernetesVersion, Etcd: c.Etcd, LoadBalancer: c.LoadBalancer,
		PodCIDR: args.Network.PodCidr, ServiceCIDR: args.Network.ServiceCidr,
		WorkerSecurityGroupID: c.WorkerSecurityGroupID, ScraperSecurityGroupID: scraper, Tags: args.Tags,
		SkipCoreDNS: !args.NoAddons && !args.Addons.CoreDNS.Disabled, ServeMetrics: prometheus,
		IgnorePreflightErrors: args.IgnorePreflightErrors, ApplyAddons: !args.NoAddons && args.Addons.inCluster(), Protect: protect,
	}, child, pulumi.DependsOn([]pulumi.Resource{c.Etcd}))
	if err != nil {
		return nil, err
	}
	c.Endpoint, c.Kubeconfig = c.ControlPlane.Endpoint, c.ControlPlane.Kubeconfig
	if err := workerRules(ctx, name+"-workers", workers.ID(), c.ControlPlane.SecurityGroupID, scraper, network.VpcCidr,
		args.Network.NodePortCidrs, []pulumi.ResourceOption{child}); err != nil {
		return nil, err
	}
	for _, pool := range args.Workers {
		for i, zone := range args.Zones {
			group, err := NewZonalWorkerGroup(ctx, name+"-"+pool.Name+"-"+zone, &ZonalWorkerGroupArgs{WorkerPool: pool,
				ClusterName: args.ClusterName, Region: args.Region, KubernetesVersion: args.KubernetesVersion, Zone: zone,
				BootstrapTimeoutMinutes: args.BootstrapTimeoutMinutes,
				SubnetID:                private[i], ControlPlane: c.ControlPlane, SecurityGroupIDs: []pulumi.StringInput{c.WorkerSecurityGroupID},
				KMSKeyArn: key, Tags: args.Tags}, child)
			if err != nil {
				return nil, err
			}
			c.WorkerGroups[pool.Name] = append(c.WorkerGroups[pool.Name], group)
		}
	}
	if !args.NoAddons {
		c.Addons, err = NewAddons(ctx, name+"-addons", &AddonsArgs{AddonsOptions: args.Addons,
			ClusterName: args.ClusterName, Region: args.Region, KubernetesVersion: args.KubernetesVersion, Zones: args.Zones,
			PodCIDR: args.Network.PodCidr, ServiceCIDR: args.Network.ServiceCidr, ControlPlane: c.ControlPlane, Etcd: c.Etcd,
			LoadBalancer: c.LoadBalancer, Assets: c.Assets, Groups: c.groups(), BackupIntervalMinutes: args.Etcd.BackupIntervalMinutes, Tags: args.Tags}, child)
		if err != nil {
			return nil, err
		}
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"endpoint": c.Endpoint, "kubeconfig": c.Kubeconfig})
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

// outputsAsInputs turns outputs into inputs.
func outputsAsInputs(values []pulumi.StringOutput) []pulumi.StringInput {
	out := make([]pulumi.StringInput, len(values))
	for i, v := range values {
		out[i] = v
	}
	return out
}
