package components

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/autoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ebs"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/route53"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/pki"
)

// EtcdMember is one member's stable identity: name, zone and DNS name.
type EtcdMember = bootstrap.EtcdMember

// EtcdOptions are the external etcd cluster's settings: the stack's
// kubeha:etcd keys. Zero fields take the Default values below.
type EtcdOptions struct {
	// Members is the number of etcd members, 3 or 5, spread round-robin over the zones.
	Members int `json:"members"`
	// InstanceType is the EC2 instance type of an etcd member.
	InstanceType string `json:"instanceType"`
	// VolumeSizeGiB is the size of each member's gp3 data volume, 8 to 1024 GiB.
	VolumeSizeGiB int `json:"volumeSizeGiB"`
	// BackupIntervalMinutes is the time between snapshots to S3, 5 to 1440 minutes.
	BackupIntervalMinutes int `json:"backupIntervalMinutes"`
	// BackupRetentionDays is how long a snapshot is kept in S3, 1 to 3650 days.
	BackupRetentionDays int `json:"backupRetentionDays"`
	// ImageID is the members' image: an AMI ID or a resolve:ssm: parameter.
	ImageID string `json:"imageId"`
	// Version is the etcd release members run, one kubeha pins: v3.6.14 (the default), or v3.6.6 for clusters created at it. Running members keep theirs until `kubeha upgrade` replaces each (README: roll or upgrade etcd members).
	Version string `json:"version"`
}

// Defaults of EtcdOptions.
const (
	DefaultEtcdMembers               = 3
	DefaultEtcdInstanceType          = "m6i.large"
	DefaultEtcdVolumeSizeGiB         = 20
	DefaultEtcdBackupIntervalMinutes = 15
	DefaultEtcdBackupRetentionDays   = 30
)

func (o EtcdOptions) withDefaults() EtcdOptions {
	o.Members = cmp.Or(o.Members, DefaultEtcdMembers)
	o.InstanceType = cmp.Or(o.InstanceType, DefaultEtcdInstanceType)
	o.VolumeSizeGiB = cmp.Or(o.VolumeSizeGiB, DefaultEtcdVolumeSizeGiB)
	o.BackupIntervalMinutes = cmp.Or(o.BackupIntervalMinutes, DefaultEtcdBackupIntervalMinutes)
	o.BackupRetentionDays = cmp.Or(o.BackupRetentionDays, DefaultEtcdBackupRetentionDays)
	o.ImageID = cmp.Or(o.ImageID, DefaultImage)
	o.Version = cmp.Or(o.Version, bootstrap.EtcdVersion)
	return o
}

// check reports every field of defaulted options outside its limits.
func (o EtcdOptions) check(c checker) {
	switch {
	case o.Members%2 == 0:
		c.add("Members", fmt.Sprint(o.Members), "3 or 5: an even count tolerates no more failures than the odd count below it")
	case o.Members != 3 && o.Members != 5:
		c.add("Members", fmt.Sprint(o.Members), "3 or 5")
	}
	c.instanceType("InstanceType", o.InstanceType)
	c.between("VolumeSizeGiB", o.VolumeSizeGiB, 8, 1024)
	c.between("BackupIntervalMinutes", o.BackupIntervalMinutes, 5, 1440)
	c.between("BackupRetentionDays", o.BackupRetentionDays, 1, 3650)
	c.imageID("ImageID", o.ImageID)
	if _, ok := bootstrap.EtcdReleases[o.Version]; !ok {
		c.add("Version", quote(o.Version), strings.Join(slices.Sorted(maps.Keys(bootstrap.EtcdReleases)), " or ")+": an etcd release kubeha pins")
	}
}

// EtcdClusterArgs describes the external etcd cluster: its options and
// what it is wired to.
type EtcdClusterArgs struct {
	EtcdOptions
	// Members go round-robin over the zones.
	ZonalWiring
	// ScraperSecurityGroupID, if set, may read etcd's TLS metrics port
	// (Prometheus' nodes).
	ScraperSecurityGroupID pulumi.StringInput
	// Protect guards the backup bucket and the data volumes from
	// `pulumi destroy`.
	Protect bool
	Tags    map[string]string
}

// EtcdCluster is one etcd member per zone, each an auto-scaling group of
// one with its own EBS data volume and DNS name, mutual TLS everywhere, and
// leader-only snapshots to S3.
type EtcdCluster struct {
	pulumi.ResourceState

	Members []EtcdMember
	// Groups are the members' auto-scaling groups of one, in member order.
	Groups []*autoscaling.Group
	// ClientEndpoints are https://<member DNS>:2379, for kube-apiserver.
	ClientEndpoints pulumi.StringArrayOutput
	CACertPEM       pulumi.StringOutput
	// ClientCertPEM and ClientKeyPEM (secret) are kube-apiserver's identity.
	ClientCertPEM pulumi.StringOutput
	ClientKeyPEM  pulumi.StringOutput
	// MetricsClientCertPEM and MetricsClientKeyPEM (secret) are the
	// health-check identity, which Prometheus uses on the TLS metrics port.
	MetricsClientCertPEM pulumi.StringOutput
	MetricsClientKeyPEM  pulumi.StringOutput
	// ClientSecretArn holds ca.crt, client.crt/key (kube-apiserver) and
	// healthcheck.crt/key (probes, metrics) for control-plane nodes.
	ClientSecretArn pulumi.StringOutput
	// SecurityGroupID is the members'; ClientSecurityGroupID is the group a
	// node must carry to reach port 2379.
	SecurityGroupID       pulumi.StringOutput
	ClientSecurityGroupID pulumi.StringOutput
	BackupBucket          pulumi.StringOutput
	HostedZoneID          pulumi.StringOutput
}

// validated is args with defaults filled in, or every problem found.
func (args *EtcdClusterArgs) validated() (*EtcdClusterArgs, error) {
	a := *args
	a.EtcdOptions = a.EtcdOptions.withDefaults()
	c := newChecker("EtcdClusterArgs.")
	a.EtcdOptions.check(c)
	a.ZonalWiring.check(c)
	if a.Assets != nil && len(c.errsOn("Version")) == 0 && a.Assets.Assets.Etcd.Key != bootstrap.EtcdArchiveKey(a.Version) {
		c.add("Version", a.Version, "the etcd release the asset bucket holds ("+a.Assets.Assets.Etcd.Key+")")
	}
	return &a, c.err()
}

// NewEtcdCluster declares the cluster.
func NewEtcdCluster(ctx *pulumi.Context, name string, args *EtcdClusterArgs, opts ...pulumi.ResourceOption) (*EtcdCluster, error) {
	args, err := args.validated()
	if err != nil {
		return nil, err
	}
	rendered := bootstrap.NewEtcdCluster(args.ClusterName, args.Zones, args.Members, args.VolumeSizeGiB, args.BackupIntervalMinutes)
	rendered.BootstrapDeadline = bootstrapDeadline(args.BootstrapTimeoutMinutes)
	c := &EtcdCluster{Members: rendered.Members}
	if err := ctx.RegisterComponentResource("kubeha:index:EtcdCluster", name, c, opts...); err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(c)}
	tags := func(resource string, extra ...string) pulumi.StringMap {
		return clusterTags(args.ClusterName, resource, args.Tags, extra...)
	}

	if err := c.securityGroups(ctx, name, args, tags, child); err != nil {
		return nil, err
	}
	zone, err := route53.NewZone(ctx, name+"-dns", &route53.ZoneArgs{
		Name:    pulumi.String(bootstrap.EtcdDomain(args.ClusterName)),
		Comment: pulumi.String("etcd members of " + args.ClusterName + "; each member upserts its own record at boot"),
		Vpcs:    route53.ZoneVpcArray{route53.ZoneVpcArgs{VpcId: args.VpcID}},
		// The records are the members', not Pulumi's.
		ForceDestroy: pulumi.Bool(true),
		Tags:         tags(name + "-dns"),
	}, child...)
	if err != nil {
		return nil, err
	}
	c.HostedZoneID = zone.ZoneId
	bucket, err := c.backupBucket(ctx, name, args, tags, child)
	if err != nil {
		return nil, err
	}

	ca, err := issueCA(ctx, name+"-ca", pki.EtcdCA(args.ClusterName), child)
	if err != nil {
		return nil, err
	}
	client, err := issueCert(ctx, name+"-apiserver-client", pki.EtcdClient("kube-apiserver-etcd-client"), ca, child)
	if err != nil {
		return nil, err
	}
	// A separate, read-mostly identity for health checks and metrics scrapes.
	health, err := issueCert(ctx, name+"-healthcheck-client", pki.EtcdHealthcheckClient(), ca, child)
	if err != nil {
		return nil, err
	}
	clientSecret, err := storeSecret(ctx, name+"-client", args.KMSKeyArn, tags(name+"-client"), child, pulumi.StringMap{
		"ca.crt": ca.CertPEM, "client.crt": client.CertPEM, "client.key": client.KeyPEM,
		"healthcheck.crt": health.CertPEM, "healthcheck.key": health.KeyPEM,
	})
	if err != nil {
		return nil, err
	}
	c.CACertPEM, c.ClientCertPEM, c.ClientKeyPEM, c.ClientSecretArn = ca.CertPEM, client.CertPEM, client.KeyPEM, clientSecret.Arn
	c.MetricsClientCertPEM, c.MetricsClientKeyPEM = health.CertPEM, health.KeyPEM

	var endpoints pulumi.StringArray
	for i, m := range rendered.Members {
		zoneIndex := i % len(args.Zones)
		// e.g. kubeha-prod-etcd-a-eu-west-1a: zonal names end in their zone.
		memberName := fmt.Sprintf("%s-%s-%s", name, strings.TrimPrefix(m.Name, "etcd-"), m.Zone)
		if err := c.member(ctx, memberName, m, args.SubnetIDs[zoneIndex], rendered, args, ca, zone, bucket, tags, child); err != nil {
			return nil, err
		}
		endpoints = append(endpoints, pulumi.String(m.ClientURL()))
	}
	c.ClientEndpoints = endpoints.ToStringArrayOutput()
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"clientEndpoints":       c.ClientEndpoints,
		"caCertPem":             c.CACertPEM,
		"clientSecretArn":       c.ClientSecretArn,
		"securityGroupId":       c.SecurityGroupID,
		"clientSecurityGroupId": c.ClientSecurityGroupID,
		"backupBucket":          c.BackupBucket,
		"hostedZoneId":          c.HostedZoneID,
	})
}

// securityGroups makes the members' group and the group a node must
// carry to reach port 2379; etcdMemberRules says what reaches members.
func (c *EtcdCluster) securityGroups(ctx *pulumi.Context, name string, args *EtcdClusterArgs, tags func(string, ...string) pulumi.StringMap, opts []pulumi.ResourceOption) error {
	members, err := newSecurityGroup(ctx, name, args.VpcID, "etcd members of "+args.ClusterName, tags(name), opts)
	if err != nil {
		return err
	}
	clients, err := newSecurityGroup(ctx, name+"-client", args.VpcID, "may reach etcd on 2379 (control-plane nodes)", tags(name+"-client"), opts)
	if err != nil {
		return err
	}
	c.SecurityGroupID, c.ClientSecurityGroupID = members.ID().ToStringOutput(), clients.ID().ToStringOutput()
	return etcdMemberRules(ctx, name, members.ID(), clients.ID(), args.ScraperSecurityGroupID, opts)
}

// backupBucket: versioned, KMS-encrypted, private, TLS-only, and snapshots
// expire after the retention period.
func (c *EtcdCluster) backupBucket(ctx *pulumi.Context, name string, args *EtcdClusterArgs, tags func(string, ...string) pulumi.StringMap, opts []pulumi.ResourceOption) (*s3.BucketV2, error) {
	bucket, err := privateBucket(ctx, name+"-backups", args.ClusterName+"-etcd-", args.Protect, tags(name+"-backups"), opts)
	if err != nil {
		return nil, err
	}
	c.BackupBucket = bucket.Bucket
	if _, err := s3.NewBucketVersioningV2(ctx, name+"-backups", &s3.BucketVersioningV2Args{
		Bucket: bucket.ID(), VersioningConfiguration: &s3.BucketVersioningV2VersioningConfigurationArgs{Status: pulumi.String("Enabled")},
	}, opts...); err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketServerSideEncryptionConfigurationV2(ctx, name+"-backups", &s3.BucketServerSideEncryptionConfigurationV2Args{
		Bucket: bucket.ID(),
		Rules: s3.BucketServerSideEncryptionConfigurationV2RuleArray{s3.BucketServerSideEncryptionConfigurationV2RuleArgs{
			ApplyServerSideEncryptionByDefault: &s3.BucketServerSideEncryptionConfigurationV2RuleApplyServerSideEncryptionByDefaultArgs{
				SseAlgorithm: pulumi.String("aws:kms"), KmsMasterKeyId: args.KMSKeyArn,
			},
			BucketKeyEnabled: pulumi.Bool(true),
		}},
	}, opts...); err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketLifecycleConfigurationV2(ctx, name+"-backups", &s3.BucketLifecycleConfigurationV2Args{
		Bucket: bucket.ID(),
		Rules: s3.BucketLifecycleConfigurationV2RuleArray{s3.BucketLifecycleConfigurationV2RuleArgs{
			Id:                          pulumi.String("snapshot-retention"),
			Status:                      pulumi.String("Enabled"),
			Filter:                      &s3.BucketLifecycleConfigurationV2RuleFilterArgs{Prefix: pulumi.String("snapshots/")},
			Expiration:                  &s3.BucketLifecycleConfigurationV2RuleExpirationArgs{Days: pulumi.Int(args.BackupRetentionDays)},
			NoncurrentVersionExpiration: &s3.BucketLifecycleConfigurationV2RuleNoncurrentVersionExpirationArgs{NoncurrentDays: pulumi.Int(args.BackupRetentionDays)},
			AbortIncompleteMultipartUpload: &s3.BucketLifecycleConfigurationV2RuleAbortIncompleteMultipartUploadArgs{
				DaysAfterInitiation: pulumi.Int(1),
			},
		}},
	}, opts...); err != nil {
		return nil, err
	}
	return bucket, err
}

// member declares one member: its volume, certificates and secret, IAM,
// launch template and auto-scaling group of one.
// etcdPlaceholderAddress is a member's DNS record until the member boots.
const etcdPlaceholderAddress = "203.0.113.123"

func (c *EtcdCluster) member(ctx *pulumi.Context, name string, m EtcdMember, subnet pulumi.StringInput, rendered bootstrap.EtcdCluster,
	args *EtcdClusterArgs, ca tlsPair, zone *route53.Zone, bucket *s3.BucketV2, tags func(string, ...string) pulumi.StringMap, opts []pulumi.ResourceOption) error {
	const memberTag = bootstrap.EtcdMemberTag

	// The data outlives every instance of the member, and `pulumi destroy`
	// too unless deletion protection is off.
	volume, err := ebs.NewVolume(ctx, name+"-data", &ebs.VolumeArgs{
		AvailabilityZone: pulumi.String(m.Zone),
		Size:             pulumi.Int(args.VolumeSizeGiB),
		Type:             pulumi.String("gp3"),
		Encrypted:        pulumi.Bool(true),
		Tags:             tags(name+"-data", memberTag, m.Name),
	}, append(opts, pulumi.Protect(args.Protect))...)
	if err != nil {
		return err
	}

	server, err := issueCert(ctx, name+"-server", pki.EtcdServer(m.DNSName), ca, opts)
	if err != nil {
		return err
	}
	// The member's name exists before any instance does, so that no peer
	// caches "no such name" (Route 53's negative answers last the zone's
	// SOA minimum); each instance points it at itself at boot, and Pulumi
	// leaves the value alone. The placeholder is kops' documentation
	// address, reachable by nothing.
	if _, err := route53.NewRecord(ctx, name+"-dns", &route53.RecordArgs{
		ZoneId: zone.ZoneId, Name: pulumi.String(m.DNSName), Type: pulumi.String("A"), Ttl: pulumi.Int(bootstrap.EtcdRecordTTL),
		Records: pulumi.StringArray{pulumi.String(etcdPlaceholderAddress)}, AllowOverwrite: pulumi.Bool(true),
	}, append(opts, pulumi.IgnoreChanges([]string{"records", "ttl"}))...); err != nil {
		return err
	}
	peer, err := issueCert(ctx, name+"-peer", pki.EtcdPeer(m.DNSName), ca, opts)
	if err != nil {
		return err
	}
	secret, err := storeSecret(ctx, name, args.KMSKeyArn, tags(name), opts, pulumi.StringMap{
		"ca.crt": ca.CertPEM, "server.crt": server.CertPEM, "server.key": server.KeyPEM, "peer.crt": peer.CertPEM, "peer.key": peer.KeyPEM,
	})
	if err != nil {
		return err
	}

	policy := resolve(pulumi.StringMap{"volume": volume.Arn, "secret": secret.Arn, "key": args.KMSKeyArn, "bucket": bucket.Arn, "zone": zone.Arn,
		"assets": args.Assets.BucketArn}, func(arn map[string]string) (string, error) {
		volumeArn, secretArn, keyArn, bucketArn, zoneArn := arn["volume"], arn["secret"], arn["key"], arn["bucket"], arn["zone"]
		return policyJSON(
			args.Assets.readPolicy(arn["assets"], args.Assets.Assets.Etcd),
			policyStatement{Sid: "AttachOwnVolume", Effect: "Allow", Action: []string{"ec2:AttachVolume"}, Resource: volumeArn},
			policyStatement{Sid: "AttachToOwnInstance", Effect: "Allow", Action: []string{"ec2:AttachVolume"}, Resource: "arn:aws:ec2:*:*:instance/*",
				Condition: map[string]map[string]any{"StringEquals": {"aws:ResourceTag/" + memberTag: m.Name, "aws:ResourceTag/" + clusterTagKey(args.ClusterName): "owned"}}},
			policyStatement{Sid: "DescribeVolumes", Effect: "Allow", Action: []string{"ec2:DescribeVolumes"}, Resource: "*"},
			// etcd-leave.sh finds a silent member's group by its tags.
			policyStatement{Sid: "FindMembersGroups", Effect: "Allow", Action: []string{"autoscaling:DescribeAutoScalingGroups"}, Resource: "*"},
			policyStatement{Sid: "ReadOwnSecret", Effect: "Allow", Action: []string{"secretsmanager:GetSecretValue"}, Resource: secretArn},
			policyStatement{Sid: "UseClusterKey", Effect: "Allow", Action: []string{"kms:Decrypt", "kms:GenerateDataKey"}, Resource: keyArn,
				Condition: map[string]map[string]any{"StringEquals": {"kms:ViaService": []string{
					"secretsmanager." + args.Region + ".amazonaws.com", "s3." + args.Region + ".amazonaws.com"}}}},
			policyStatement{Sid: "Snapshots", Effect: "Allow", Action: []string{"s3:PutObject", "s3:GetObject"}, Resource: bucketArn + "/snapshots/*"},
			// The marker that the cluster formed, outside the snapshots'
			// expiry: written once, read by a member that lost its data.
			policyStatement{Sid: "ClusterMarker", Effect: "Allow", Action: []string{"s3:PutObject", "s3:GetObject"}, Resource: bucketArn + "/" + bootstrap.EtcdClusterMarkerKey},
			policyStatement{Sid: "ListSnapshots", Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: bucketArn,
				Condition: map[string]map[string]any{"StringLike": {"s3:prefix": []string{"snapshots/", "snapshots/*", bootstrap.EtcdClusterMarkerKey}}}},
			policyStatement{Sid: "UpsertOwnRecord", Effect: "Allow", Action: []string{"route53:ChangeResourceRecordSets"}, Resource: zoneArn,
				Condition: map[string]map[string]any{"ForAllValues:StringEquals": {
					"route53:ChangeResourceRecordSetsNormalizedRecordNames": []string{m.DNSName},
					"route53:ChangeResourceRecordSetsRecordTypes":           []string{"A"},
					"route53:ChangeResourceRecordSetsActions":               []string{"UPSERT"},
				}}},
		), nil
	})
	profile, err := nodeIdentity(ctx, name, args.ClusterName, policy, tags(name), nil, opts)
	if err != nil {
		return err
	}

	wired := pulumi.StringMap{"volume": volume.ID().ToStringOutput(), "zone": zone.ZoneId, "secret": secret.Arn, "bucket": bucket.Bucket, "key": args.KMSKeyArn,
		"assets": args.Assets.Bucket}
	data := resolve(wired, func(v map[string]string) (string, error) {
		node, err := rendered.Node(bootstrap.EtcdNodeParams{
			Member: m, Region: args.Region, VolumeID: v["volume"], HostedZoneID: v["zone"],
			SecretID: v["secret"], BackupBucket: v["bucket"], KMSKeyID: v["key"],
			AssetBucket: v["assets"], Etcd: args.Assets.Assets.Etcd,
		})
		if err != nil {
			return "", err
		}
		return userData(node)
	})
	template, err := launchTemplate(ctx, name, nodeTemplate{
		ImageID: args.ImageID, InstanceType: args.InstanceType, RootVolumeGiB: 20, Profile: profile,
		SecurityGroups: pulumi.StringArray{c.SecurityGroupID}, UserData: data, Tags: tags(name, memberTag, m.Name),
	}, opts)
	if err != nil {
		return err
	}
	group, err := singleNodeGroup(ctx, name, subnet, template, tags(name, memberTag, m.Name), nil, rendered.BootstrapDeadline, opts)
	if err != nil {
		return err
	}
	c.Groups = append(c.Groups, group)
	// A member leaving its group waits until the others are healthy
	// voters (bootstrap.EtcdLeaveHook).
	return terminationHook(ctx, name+"-leave", group, bootstrap.EtcdLeaveHook, bootstrap.EtcdLeaveHookTimeout, opts)
}
