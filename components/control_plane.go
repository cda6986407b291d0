package components

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/autoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ssm"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/oidc"
	"github.com/kubeha/kubeha/internal/pki"
)

// ControlPlaneOptions are the control-plane nodes' settings: the stack's
// kubeha:controlPlane keys.
type ControlPlaneOptions struct {
	// InstanceType is the EC2 instance type of a control-plane node.
	InstanceType   string         `json:"instanceType"`
	LeaderElection LeaderElection `json:"leaderElection"`
	// ImageID is the nodes' image: an AMI ID or a resolve:ssm: parameter.
	ImageID string `json:"imageId"`
	// JoinTokenGeneration is the join token's generation: raise it and run `pulumi up` to rotate the token (a new ID and secret); within 10 minutes the control-plane nodes delete every other token. 1 or more, default 1.
	JoinTokenGeneration int `json:"joinTokenGeneration"`
	// CertificateValidity is how long the certificates kubeadm makes on each control-plane node last (the API server's serving and client certificates, the controller-manager's, scheduler's and admin's kubeconfigs), as a duration: each node renews its own with a third to a half of it left, at its own time. From 10m (to rehearse renewal) to 8760h, default 8760h (a year, kubeadm's).
	CertificateValidity string        `json:"certificateValidity"`
	NodeLifecycle       NodeLifecycle `json:"nodeLifecycle"`
}

// NodeLifecycle is how soon the control plane gives up on a node that
// stopped reporting, as when its zone is lost: first its pods leave every
// Service, then they are replaced on other nodes. Kubernetes' own timing
// (50 s, then 300 s) keeps a lost zone's pods in Services for most of a
// minute and unreplaced for six.
type NodeLifecycle struct {
	// NodeMonitorGracePeriodSeconds is how long a node may go without renewing its Lease (kubelets renew every 10 s) before it is NotReady and its pods leave every Service's endpoints. From 20 (two renewals missed) to 300, default 20; Kubernetes' default is 50.
	NodeMonitorGracePeriodSeconds int `json:"nodeMonitorGracePeriodSeconds"`
	// PodEvictionSeconds is how long a pod stays on a NotReady or unreachable node before it is evicted and replaced elsewhere: the API server's default not-ready and unreachable tolerations, which every pod that sets none gets, kubeha's add-ons among them (DaemonSets' pods tolerate forever). From 1 to 3600, default 60; Kubernetes' default is 300.
	PodEvictionSeconds int `json:"podEvictionSeconds"`
}

// LeaderElection is the Lease timing of kube-scheduler and
// kube-controller-manager: one replica of each acts, another takes over
// within about LeaseDurationSeconds when it dies.
type LeaderElection struct {
	// LeaseDurationSeconds is how long a Lease holder is trusted without renewing: the takeover time after a node dies. More than RenewDeadlineSeconds, at most 300.
	LeaseDurationSeconds int `json:"leaseDurationSeconds"`
	// RenewDeadlineSeconds is how long the holder keeps retrying to renew before it steps down. More than 1.2 x RetryPeriodSeconds, as client-go requires.
	RenewDeadlineSeconds int `json:"renewDeadlineSeconds"`
	// RetryPeriodSeconds is the time between Lease acquire and renew attempts, 1 or more.
	RetryPeriodSeconds int `json:"retryPeriodSeconds"`
}

// Defaults of ControlPlaneOptions. The Lease timing is Kubernetes' own: a
// dead holder is replaced within about 15 s.
const (
	DefaultControlPlaneInstanceType = "m6i.large"
	DefaultLeaseDurationSeconds     = 15
	DefaultRenewDeadlineSeconds     = 10
	DefaultRetryPeriodSeconds       = 2
	DefaultCertificateValidity      = "8760h"
	// A lost zone's pods leave Services after 20 s and are replaced after
	// 80 s: two missed Lease renewals are not a blip, and a minute of
	// NotReady is not a reboot.
	DefaultNodeMonitorGracePeriodSeconds = 20
	DefaultPodEvictionSeconds            = 60
)

func (o ControlPlaneOptions) withDefaults() ControlPlaneOptions {
	o.InstanceType = cmp.Or(o.InstanceType, DefaultControlPlaneInstanceType)
	o.ImageID = cmp.Or(o.ImageID, DefaultImage)
	o.JoinTokenGeneration = cmp.Or(o.JoinTokenGeneration, 1)
	o.CertificateValidity = cmp.Or(o.CertificateValidity, DefaultCertificateValidity)
	nl := &o.NodeLifecycle
	nl.NodeMonitorGracePeriodSeconds = cmp.Or(nl.NodeMonitorGracePeriodSeconds, DefaultNodeMonitorGracePeriodSeconds)
	nl.PodEvictionSeconds = cmp.Or(nl.PodEvictionSeconds, DefaultPodEvictionSeconds)
	le := &o.LeaderElection
	le.LeaseDurationSeconds = cmp.Or(le.LeaseDurationSeconds, DefaultLeaseDurationSeconds)
	le.RenewDeadlineSeconds = cmp.Or(le.RenewDeadlineSeconds, DefaultRenewDeadlineSeconds)
	le.RetryPeriodSeconds = cmp.Or(le.RetryPeriodSeconds, DefaultRetryPeriodSeconds)
	return o
}

func (o ControlPlaneOptions) check(c checker) {
	c.instanceType("InstanceType", o.InstanceType)
	c.imageID("ImageID", o.ImageID)
	if o.JoinTokenGeneration < 1 {
		c.add("JoinTokenGeneration", fmt.Sprint(o.JoinTokenGeneration), "1 or more")
	}
	if d, err := time.ParseDuration(o.CertificateValidity); err != nil || d < 10*time.Minute || d > 8760*time.Hour {
		c.add("CertificateValidity", o.CertificateValidity, "a duration from 10m to 8760h, such as 8760h")
	}
	nl, nc := o.NodeLifecycle, c.at("NodeLifecycle")
	if g := nl.NodeMonitorGracePeriodSeconds; g < 20 || g > 300 {
		nc.add("NodeMonitorGracePeriodSeconds", fmt.Sprint(g), "20 to 300: under 20, one late Lease renewal (every 10 s) marks a healthy node NotReady")
	}
	if e := nl.PodEvictionSeconds; e < 1 || e > 3600 {
		nc.add("PodEvictionSeconds", fmt.Sprint(e), "1 to 3600")
	}
	l, lc := o.LeaderElection, c.at("LeaderElection")
	switch {
	case l.RetryPeriodSeconds < 1:
		lc.add("RetryPeriodSeconds", fmt.Sprint(l.RetryPeriodSeconds), "1 or more")
	// client-go would refuse to start the scheduler and controller-manager.
	case float64(l.RenewDeadlineSeconds) <= bootstrap.LeaderElectionJitter*float64(l.RetryPeriodSeconds):
		lc.add("RenewDeadlineSeconds", fmt.Sprint(l.RenewDeadlineSeconds),
			fmt.Sprintf("more than 1.2 x RetryPeriodSeconds (%d), which client-go requires", l.RetryPeriodSeconds))
	case l.LeaseDurationSeconds <= l.RenewDeadlineSeconds:
		lc.add("LeaseDurationSeconds", fmt.Sprint(l.LeaseDurationSeconds), fmt.Sprintf("more than RenewDeadlineSeconds (%d)", l.RenewDeadlineSeconds))
	case l.LeaseDurationSeconds > 300:
		lc.add("LeaseDurationSeconds", fmt.Sprint(l.LeaseDurationSeconds), "at most 300")
	}
}

// durations is the Lease timing as the node rendering takes it.
func (l LeaderElection) durations() bootstrap.LeaderElection {
	return bootstrap.LeaderElectionSeconds(l.LeaseDurationSeconds, l.RenewDeadlineSeconds, l.RetryPeriodSeconds)
}

// ControlPlaneArgs describes the control-plane nodes: their options and
// what they are wired to.
type ControlPlaneArgs struct {
	ControlPlaneOptions
	// One node per zone.
	ZonalWiring
	KubernetesVersion string
	// Etcd and LoadBalancer are the cluster's EtcdCluster and ApiLoadBalancer.
	Etcd         *EtcdCluster
	LoadBalancer *ApiLoadBalancer
	PodCIDR      string
	ServiceCIDR  string
	// WorkerSecurityGroupID, if set, is the workers' group: admitted to the
	// API and the CNI's ports. ScraperSecurityGroupID, if set, may scrape
	// the nodes (Prometheus' nodes).
	WorkerSecurityGroupID  pulumi.StringInput
	ScraperSecurityGroupID pulumi.StringInput
	Tags                   map[string]string
	// SkipCoreDNS and ServeMetrics: see bootstrap.ControlPlane. Cluster
	// sets them from its Addons.
	SkipCoreDNS  bool
	ServeMetrics bool
	// ManagedPolicyArns are AWS-managed policies added to the nodes' role.
	ManagedPolicyArns []string
	// IgnorePreflightErrors are kubeadm preflight checks every node may fail
	// (kubeadm's --ignore-preflight-errors); none by default.
	IgnorePreflightErrors []string
	// ApplyAddons runs the add-on applier on every node: it applies the
	// add-on set the Addons component writes to the asset bucket.
	ApplyAddons bool
	// Protect guards the service-account issuer's bucket from `pulumi
	// destroy`: a new bucket is a new issuer, which no role trusts.
	Protect bool
}

// ControlPlane is one control-plane node per zone, each an auto-scaling
// group of one registered with the API load balancer. Every node runs
// kube-apiserver against the external etcd, and kube-scheduler and
// kube-controller-manager under Lease leader election.
type ControlPlane struct {
	pulumi.ResourceState

	// Endpoint is https://<load balancer>:6443.
	Endpoint  pulumi.StringOutput
	CACertPEM pulumi.StringOutput
	// Kubeconfig is a cluster-admin kubeconfig for Endpoint (secret).
	Kubeconfig      pulumi.StringOutput
	SecurityGroupID pulumi.StringOutput
	// Groups are the nodes' auto-scaling groups, in zone order. Each waits
	// for its node to pass the load balancer's /readyz check, so anything
	// that depends on them starts against a serving API.
	Groups []*autoscaling.Group
	// JoinSecretArn holds the join token and CA for worker nodes.
	JoinSecretArn pulumi.StringOutput
	// ServiceAccountIssuer is the URL of the cluster's service-account
	// token issuer, whose documents a public bucket serves to AWS STS;
	// OIDCProviderArn the IAM OIDC provider trusting it, which the
	// add-ons' roles for service accounts name.
	ServiceAccountIssuer pulumi.StringOutput
	OIDCProviderArn      pulumi.StringOutput
	// endpointHost is the endpoint's DNS name, which nodes join through.
	endpointHost pulumi.StringOutput
	// assets are what workers install from; ignorePreflightErrors what
	// their kubeadm may fail.
	assets                *NodeAssets
	ignorePreflightErrors []string
}

// validated is args with defaults filled in, or every problem found.
func (args *ControlPlaneArgs) validated() (*ControlPlaneArgs, error) {
	a := *args
	a.ControlPlaneOptions = a.ControlPlaneOptions.withDefaults()
	c := newChecker("ControlPlaneArgs.")
	a.ControlPlaneOptions.check(c)
	a.ZonalWiring.check(c)
	c.kubernetesVersion("KubernetesVersion", a.KubernetesVersion)
	if a.Etcd == nil || a.LoadBalancer == nil {
		c.add("Etcd", "nil", "the cluster's EtcdCluster and ApiLoadBalancer (LoadBalancer)")
	}
	if a.PodCIDR == "" || a.ServiceCIDR == "" {
		c.add("PodCIDR", "empty", "the pod and service CIDRs (ServiceCIDR)")
	}
	return &a, c.err()
}

// NewControlPlane declares the shared PKI and secrets, the security group,
// and one node per zone.
func NewControlPlane(ctx *pulumi.Context, name string, args *ControlPlaneArgs, opts ...pulumi.ResourceOption) (*ControlPlane, error) {
	args, err := args.validated()
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{}
	if err := ctx.RegisterComponentResource("kubeha:index:ControlPlane", name, c, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(c)}
	tags := func(resource string, extra ...string) pulumi.StringMap {
		return clusterTags(args.ClusterName, resource, args.Tags, extra...)
	}

	if err := c.securityGroup(ctx, name, args, tags, child); err != nil {
		return nil, err
	}
	secrets, err := c.sharedSecrets(ctx, name, args, tags, child)
	if err != nil {
		return nil, err
	}
	// The record of the cluster's version: the nodes keep it current
	// (version-record), and it goes with the cluster, so that a new
	// cluster of the same name starts without one.
	if _, err := ssm.NewParameter(ctx, name+"-version", &ssm.ParameterArgs{
		Name: pulumi.String(bootstrap.RunningVersionParameter(args.ClusterName)), Type: pulumi.String("String"),
		Value: pulumi.String(args.KubernetesVersion), Overwrite: pulumi.Bool(true), Tags: tags(name + "-version"),
		Description: pulumi.String("The Kubernetes version " + args.ClusterName + "'s control plane records; `pulumi up` reads it before a version change"),
	}, append(slices.Clone(child), pulumi.IgnoreChanges([]string{"value"}))...); err != nil {
		return nil, err
	}
	c.Endpoint, c.endpointHost, c.assets = args.LoadBalancer.Endpoint, args.LoadBalancer.DNSName, args.Assets
	c.ignorePreflightErrors = args.IgnorePreflightErrors

	certificateValidity, err := time.ParseDuration(args.CertificateValidity) // checked with the options
	if err != nil {
		return nil, err
	}
	var etcdEndpoints []string
	for _, m := range args.Etcd.Members {
		etcdEndpoints = append(etcdEndpoints, m.ClientURL())
	}
	rendered := bootstrap.ControlPlane{
		ClusterName: args.ClusterName, BootstrapDeadline: bootstrapDeadline(args.BootstrapTimeoutMinutes), KubernetesVersion: args.KubernetesVersion,
		PodCIDR: args.PodCIDR, ServiceCIDR: args.ServiceCIDR, EtcdEndpoints: etcdEndpoints,
		LeaderElection: args.LeaderElection.durations(), InitZone: args.Zones[0],
		NodeMonitorGracePeriod: time.Duration(args.NodeLifecycle.NodeMonitorGracePeriodSeconds) * time.Second,
		PodEviction:            time.Duration(args.NodeLifecycle.PodEvictionSeconds) * time.Second,
		SkipCoreDNS:            args.SkipCoreDNS, ServeMetrics: args.ServeMetrics, IgnorePreflightErrors: args.IgnorePreflightErrors,
		CertificateValidity: certificateValidity,
		ShutdownDelay:       args.LoadBalancer.detection,
		ApplyAddons:         args.ApplyAddons, APITunnel: args.LoadBalancer.accessEndpoint,
	}
	assets := args.Assets.Assets
	held := args.Assets.heldInstalls(assets, NodeAssetSet.Images)
	install := args.Assets.readPolicy
	// The nodes' timer scripts, which their user-data has no room for.
	chores, err := bootstrap.ControlPlaneChores()
	if err != nil {
		return nil, err
	}
	choresObject, err := s3.NewBucketObjectv2(ctx, name+"-chores", &s3.BucketObjectv2Args{
		Bucket: args.Assets.bucketID, Key: pulumi.String(chores.Key),
		ContentBase64: pulumi.String(base64.StdEncoding.EncodeToString(chores.Data)), ContentType: pulumi.String("application/gzip"),
		Tags: tags(name + "-chores"),
	}, child...)
	if err != nil {
		return nil, err
	}
	policy := resolve(pulumi.StringMap{"secret": secrets.Arn, "key": args.KMSKeyArn, "assets": args.Assets.BucketArn}, func(arn map[string]string) (string, error) {
		return controlPlanePolicy(arn["secret"], arn["key"], args.Region,
			install(arn["assets"], slices.Concat([]Asset{assets.Kubectl, assets.Helm, {Key: chores.Key}}, assets.NodeBinaries(), assets.Images(), held)...),
			slices.Concat(workerTokenStatements(arn["assets"]), applierStatements(args.ApplyAddons, args.ClusterName, arn["assets"]),
				[]policyStatement{recordVersionStatement(args.Region, args.ClusterName, "ssm:PutParameter")})...), nil
	})
	profile, err := nodeIdentity(ctx, name, args.ClusterName, policy, tags(name), args.ManagedPolicyArns, child)
	if err != nil {
		return nil, err
	}
	for i, zone := range args.Zones {
		nodeName := fmt.Sprintf("%s-%s", name, zone)
		wired := args.Assets.wire(pulumi.StringMap{"endpoint": args.LoadBalancer.DNSName, "secret": secrets.Arn, "ca": c.CACertPEM, "issuer": c.ServiceAccountIssuer})
		data := resolve(wired, func(v map[string]string) (string, error) {
			r := rendered
			r.Endpoint, r.ServiceAccountIssuer = v["endpoint"], v["issuer"]
			node, err := r.Node(bootstrap.ControlPlaneParams{Zone: zone, Region: args.Region, SecretID: v["secret"], CACertPEM: v["ca"],
				Assets: args.Assets.resolved(v)})
			if err != nil {
				return "", err
			}
			return userData(node)
		})
		template, err := launchTemplate(ctx, nodeName, nodeTemplate{
			ImageID: args.ImageID, InstanceType: args.InstanceType, RootVolumeGiB: 50, Profile: profile,
			SecurityGroups: pulumi.StringArray{c.SecurityGroupID, args.Etcd.ClientSecurityGroupID},
			UserData:       data, Tags: tags(nodeName, controlPlaneTag, "true"),
		}, append(slices.Clone(child), pulumi.DependsOn([]pulumi.Resource{choresObject})))
		if err != nil {
			return nil, err
		}
		group, err := singleNodeGroup(ctx, nodeName, args.SubnetIDs[i], template, tags(nodeName, controlPlaneTag, "true"), args.LoadBalancer.TargetGroupArn,
			rendered.BootstrapDeadline, child)
		if err != nil {
			return nil, err
		}
		c.Groups = append(c.Groups, group)
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"endpoint": c.Endpoint, "caCertPem": c.CACertPEM, "kubeconfig": c.Kubeconfig,
		"securityGroupId": c.SecurityGroupID, "joinSecretArn": c.JoinSecretArn,
	})
}

// controlPlaneTag marks control-plane instances.
const controlPlaneTag = "kubeha.io/control-plane"

// securityGroup makes the nodes' group; controlPlaneRules says what
// reaches them.
func (c *ControlPlane) securityGroup(ctx *pulumi.Context, name string, args *ControlPlaneArgs, tags func(string, ...string) pulumi.StringMap, opts []pulumi.ResourceOption) error {
	sg, err := newSecurityGroup(ctx, name, args.VpcID, "Kubernetes control-plane nodes of "+args.ClusterName, tags(name), opts)
	if err != nil {
		return err
	}
	c.SecurityGroupID = sg.ID().ToStringOutput()
	return controlPlaneRules(ctx, name, sg.ID(), args.LoadBalancer.SecurityGroupID, args.LoadBalancer.accessEndpoint,
		args.WorkerSecurityGroupID, args.ScraperSecurityGroupID, opts)
}

// sharedSecrets makes what every control-plane node shares (the CAs, the
// service-account key, the join token and the encryption key), stores it
// in one secret with bootstrap.ControlPlaneSecretFiles as its entries,
// and makes the admin kubeconfig.
func (c *ControlPlane) sharedSecrets(ctx *pulumi.Context, name string, args *ControlPlaneArgs, tags func(string, ...string) pulumi.StringMap, opts []pulumi.ResourceOption) (*secretsmanager.Secret, error) {
	ca, err := issueCA(ctx, name+"-ca", pki.KubernetesCA(args.ClusterName), opts)
	if err != nil {
		return nil, err
	}
	frontProxy, err := issueCA(ctx, name+"-front-proxy-ca", pki.FrontProxyCA(args.ClusterName), opts)
	if err != nil {
		return nil, err
	}
	serviceAccount, err := newKey(ctx, name+"-service-account", opts)
	if err != nil {
		return nil, err
	}
	if err := c.serviceAccountIssuer(ctx, name, args, serviceAccount.PublicKeyPem, tags, opts); err != nil {
		return nil, err
	}
	token, err := joinToken(ctx, name, args.JoinTokenGeneration, opts)
	if err != nil {
		return nil, err
	}
	encryptionKey, err := random.NewRandomBytes(ctx, name+"-encryption-key", &random.RandomBytesArgs{Length: pulumi.Int(32)}, opts...)
	if err != nil {
		return nil, err
	}
	secret, err := storeSecret(ctx, name, args.KMSKeyArn, tags(name), opts, pulumi.StringMap{
		"pki/ca.crt": ca.CertPEM, "pki/ca.key": ca.KeyPEM,
		"pki/front-proxy-ca.crt": frontProxy.CertPEM, "pki/front-proxy-ca.key": frontProxy.KeyPEM,
		"pki/sa.key": pulumi.ToSecret(serviceAccount.PrivateKeyPem).(pulumi.StringOutput), "pki/sa.pub": serviceAccount.PublicKeyPem,
		"pki/etcd/ca.crt": args.Etcd.CACertPEM, "pki/apiserver-etcd-client.crt": args.Etcd.ClientCertPEM,
		"pki/apiserver-etcd-client.key": args.Etcd.ClientKeyPEM,
		"bootstrap-token":               token, "encryption-key": encryptionKey.Base64,
	})
	if err != nil {
		return nil, err
	}
	// Workers need only the CA: each joins with a token of its own
	// (bootstrap.NodeTokenPrefix).
	join, err := storeSecret(ctx, name+"-join", args.KMSKeyArn, tags(name+"-join"), opts, pulumi.StringMap{
		"pki/ca.crt": ca.CertPEM,
	})
	if err != nil {
		return nil, err
	}
	adminCert, err := issueCert(ctx, name+"-admin", pki.KubernetesAdmin(), ca, opts)
	if err != nil {
		return nil, err
	}
	c.CACertPEM, c.JoinSecretArn = ca.CertPEM, join.Arn
	admin := pulumi.StringMap{"endpoint": args.LoadBalancer.Endpoint, "ca": ca.CertPEM, "cert": adminCert.CertPEM, "key": adminCert.KeyPEM}
	c.Kubeconfig = pulumi.ToSecret(resolve(admin, func(v map[string]string) (string, error) {
		return bootstrap.AdminKubeconfig(args.ClusterName, v["endpoint"], v["ca"], v["cert"], v["key"])
	})).(pulumi.StringOutput)
	return secret, nil
}

// serviceAccountIssuer publishes the cluster as an OpenID Connect issuer
// for IAM roles for service accounts: a bucket anyone may read the
// discovery document and key set of (public keys only), and an IAM OIDC
// provider for it, for the audience sts.amazonaws.com. IAM checks the
// bucket's certificate against its trusted CAs: no thumbprint to keep.
func (c *ControlPlane) serviceAccountIssuer(ctx *pulumi.Context, name string, args *ControlPlaneArgs, publicKeyPEM pulumi.StringOutput, tags func(string, ...string) pulumi.StringMap, opts []pulumi.ResourceOption) error {
	bucketName := name + "-oidc"
	bucket, err := newBucket(ctx, bucketName, args.ClusterName+"-oidc-", args.Protect, []string{oidc.DiscoveryPath, oidc.KeySetPath}, tags(bucketName), opts)
	if err != nil {
		return err
	}
	c.ServiceAccountIssuer = bucket.Bucket.ApplyT(func(b string) string { return oidc.S3Issuer(b, args.Region) }).(pulumi.StringOutput)
	documents := pulumi.All(c.ServiceAccountIssuer, publicKeyPEM).ApplyT(func(v []any) ([]string, error) {
		discovery, keys, err := oidc.Documents(v[0].(string), v[1].(string))
		return []string{discovery, keys}, err
	}).(pulumi.StringArrayOutput)
	for i, key := range []string{oidc.DiscoveryPath, oidc.KeySetPath} {
		if _, err := s3.NewBucketObjectv2(ctx, fmt.Sprintf("%s-%d", bucketName, i), &s3.BucketObjectv2Args{
			Bucket: bucket.ID(), Key: pulumi.String(key), Content: documents.Index(pulumi.Int(i)), ContentType: pulumi.String("application/json"),
		}, opts...); err != nil {
			return err
		}
	}
	provider, err := iam.NewOpenIdConnectProvider(ctx, name, &iam.OpenIdConnectProviderArgs{
		Url: c.ServiceAccountIssuer, ClientIdLists: pulumi.StringArray{pulumi.String(oidc.STSAudience)}, Tags: tags(name),
	}, opts...)
	if err != nil {
		return err
	}
	c.OIDCProviderArn = provider.Arn
	return nil
}

// joinToken is a kubeadm bootstrap token, [a-z0-9]{6}.[a-z0-9]{16}. A
// new generation replaces both parts: kubeadm refuses a new secret under
// an ID it already holds.
func joinToken(ctx *pulumi.Context, name string, generation int, opts []pulumi.ResourceOption) (pulumi.StringOutput, error) {
	part := func(suffix string, length int) (*random.RandomString, error) {
		return random.NewRandomString(ctx, name+"-join-token-"+suffix, &random.RandomStringArgs{
			Length: pulumi.Int(length), Upper: pulumi.Bool(false), Special: pulumi.Bool(false),
			Keepers: pulumi.StringMap{"generation": pulumi.String(fmt.Sprint(generation))},
		}, opts...)
	}
	id, err := part("id", 6)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	secret, err := part("secret", 16)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	return pulumi.ToSecret(pulumi.Sprintf("%s.%s", id.Result, secret.Result)).(pulumi.StringOutput), nil
}

// controlPlanePolicy is what a control-plane node itself needs: reading
// its secret, installing its binaries, finding the instances whose
// kubelets ask for certificates (the approver) and the workers leaving or
// joining their groups (the drainer). The add-ons that act on
// AWS have roles of their own (Addons), which no pod reaches through the
// node: its metadata service answers one hop only.
func controlPlanePolicy(secretArn, keyArn, region string, install policyStatement, more ...policyStatement) string {
	return policyJSON(append([]policyStatement{
		{Sid: "FindInstances", Effect: "Allow", Resource: "*", Action: []string{"ec2:DescribeInstances"}},
		{Sid: "FindWorkerGroups", Effect: "Allow", Resource: "*", Action: []string{"autoscaling:DescribeAutoScalingGroups"}},
		{Sid: "ReadOwnSecret", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"}, Resource: secretArn},
		{Sid: "UseClusterKey", Effect: "Allow", Action: []string{"kms:Decrypt"}, Resource: keyArn,
			Condition: map[string]map[string]any{"StringEquals": {"kms:ViaService": "secretsmanager." + region + ".amazonaws.com"}}},
		install,
	}, more...)...)
}

// workerTokenStatements let the node's approver take the join tokens
// workers hand over (bootstrap.NodeTokenPrefix): list, read and delete
// them.
func workerTokenStatements(assetsArn string) []policyStatement {
	return []policyStatement{
		{Sid: "FindWorkerTokens", Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: assetsArn,
			Condition: map[string]map[string]any{"StringLike": {"s3:prefix": []string{bootstrap.NodeTokenPrefix, bootstrap.NodeTokenPrefix + "*"}}}},
		{Sid: "TakeWorkerTokens", Effect: "Allow", Action: []string{"s3:GetObject", "s3:DeleteObject"}, Resource: assetsArn + "/" + bootstrap.NodeTokenPrefix + "*"},
	}
}

// recordVersionStatement lets the node read the cluster's version record
// (which kubelet to run while the cluster upgrades) and, on a
// control-plane node, write it once it creates the cluster; no other
// parameter.
func recordVersionStatement(region, cluster string, actions ...string) policyStatement {
	return policyStatement{Sid: "RecordKubernetesVersion", Effect: "Allow", Action: append([]string{"ssm:GetParameter"}, actions...),
		Resource: "arn:aws:ssm:" + region + ":*:parameter" + bootstrap.RunningVersionParameter(cluster)}
}

// applierStatements let the add-on applier read the add-on set and the
// chart archives, report what it applied, and count its runs.
func applierStatements(apply bool, cluster, assetsArn string) []policyStatement {
	if !apply {
		return nil
	}
	return []policyStatement{
		{Sid: "ReadAddonSet", Effect: "Allow", Action: []string{"s3:GetObject"},
			Resource: []string{assetsArn + "/" + bootstrap.AddonSetKey, assetsArn + "/" + addons.ChartArchivePrefix + "*"}},
		{Sid: "ReportAddonSet", Effect: "Allow", Action: []string{"s3:PutObject"}, Resource: assetsArn + "/" + bootstrap.AddonStatusKey},
	}
}
