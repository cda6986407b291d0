package components

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/mockrun"
)

// declareEtcd declares a Network, the asset bucket and an EtcdCluster, as
// the stack does, and returns them with the wiring zonal components share.
func declareEtcd(ctx *pulumi.Context, members int) (*Network, ZonalWiring, *EtcdCluster, error) {
	net, err := NewNetwork(ctx, "c1-network", perZoneArgs())
	if err != nil {
		return nil, ZonalWiring{}, nil, err
	}
	assets, err := NewNodeAssets(ctx, "c1-assets", &NodeAssetsArgs{ClusterName: "c1"})
	if err != nil {
		return nil, ZonalWiring{}, nil, err
	}
	wiring := ZonalWiring{ClusterName: "c1", Region: "eu-west-1", Zones: testZones, VpcID: net.VpcID,
		KMSKeyArn: pulumi.String("arn:aws:kms:eu-west-1:123456789012:key/k1"), Assets: assets}
	for _, id := range net.PrivateSubnetIDs {
		wiring.SubnetIDs = append(wiring.SubnetIDs, id)
	}
	etcd, err := NewEtcdCluster(ctx, "c1-etcd", &EtcdClusterArgs{ZonalWiring: wiring, Protect: true,
		EtcdOptions: EtcdOptions{Members: members, InstanceType: "m6i.large", VolumeSizeGiB: 20, BackupIntervalMinutes: 15, BackupRetentionDays: 21},
	})
	return net, wiring, etcd, err
}

// runEtcd evaluates declareEtcd under mocks.
func runEtcd(t *testing.T, members int) *mockrun.Recorder {
	t.Helper()
	rec, err := mockrun.Run("kubeha", "test", nil, func(ctx *pulumi.Context) error {
		_, _, _, err := declareEtcd(ctx, members)
		return err
	})
	if err != nil {
		t.Fatalf("NewEtcdCluster: %v", err)
	}
	return rec
}

// subnetZone maps a mock subnet ID back to its zone.
func subnetZone(t *testing.T, rec *mockrun.Recorder, id string) string {
	t.Helper()
	for _, s := range rec.OfType("aws:ec2/subnet:Subnet") {
		if s.Name+"-id" == id {
			return s.String("availabilityZone")
		}
	}
	t.Fatalf("no subnet with ID %s", id)
	return ""
}

func TestEtcdOneMemberPerZoneWithVolumeInItsZone(t *testing.T) {
	for _, c := range []struct {
		members int
		perZone map[string]int
	}{
		{3, map[string]int{"eu-west-1a": 1, "eu-west-1b": 1, "eu-west-1c": 1}},
		{5, map[string]int{"eu-west-1a": 2, "eu-west-1b": 2, "eu-west-1c": 1}},
	} {
		rec := runEtcd(t, c.members)
		groups := rec.OfType("aws:autoscaling/group:Group")
		if len(groups) != c.members {
			t.Fatalf("%d members: %d auto-scaling groups", c.members, len(groups))
		}
		perZone := map[string]int{}
		for _, g := range groups {
			if g.Get("minSize").NumberValue() != 1 || g.Get("maxSize").NumberValue() != 1 || g.String("healthCheckType") != "EC2" {
				t.Errorf("%s: want an EC2-health-checked group of exactly 1", g.Name)
			}
			subnets := g.Strings("vpcZoneIdentifiers")
			if len(subnets) != 1 {
				t.Fatalf("%s spans subnets %v, want one", g.Name, subnets)
			}
			zone := subnetZone(t, rec, subnets[0])
			perZone[zone]++
			volume, err := rec.Named("aws:ebs/volume:Volume", g.Name+"-data")
			if err != nil {
				t.Fatal(err)
			}
			if volume.String("availabilityZone") != zone {
				t.Errorf("%s runs in %s but its data volume is in %s", g.Name, zone, volume.String("availabilityZone"))
			}
			if !volume.Bool("encrypted") || volume.String("type") != "gp3" || !volume.Protect {
				t.Errorf("%s: volume encrypted=%v type=%s protected=%v, want encrypted protected gp3",
					volume.Name, volume.Bool("encrypted"), volume.String("type"), volume.Protect)
			}
		}
		for z, n := range c.perZone {
			if perZone[z] != n {
				t.Errorf("%d members: %d in %s, want %d (got %v)", c.members, perZone[z], z, n, perZone)
			}
		}
	}
}

// portFrom is an ingress rule: a TCP port from a security group.
type portFrom struct {
	port int
	from string
}

// groupIngress counts the ingress rules of security group id, failing any
// that admits a CIDR or more than one TCP port.
func groupIngress(t *testing.T, rec *mockrun.Recorder, id string) map[portFrom]int {
	t.Helper()
	got := map[portFrom]int{}
	for _, r := range rec.OfType("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") {
		if r.String("securityGroupId") != id {
			continue
		}
		if r.String("cidrIpv4") != "" || r.String("cidrIpv6") != "" {
			t.Errorf("%s admits a CIDR (%s): this group's ingress must name security groups only", r.Name, r.String("cidrIpv4"))
		}
		if r.Get("fromPort").NumberValue() != r.Get("toPort").NumberValue() || r.String("ipProtocol") != "tcp" {
			t.Errorf("%s is not a single TCP port", r.Name)
		}
		got[portFrom{int(r.Get("fromPort").NumberValue()), r.String("referencedSecurityGroupId")}]++
	}
	return got
}

func expectIngress(t *testing.T, got, want map[portFrom]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("ingress rules = %v, want exactly %v", got, want)
	}
	for r, n := range want {
		if got[r] != n {
			t.Errorf("rule port %d from %s: %d, want %d", r.port, r.from, got[r], n)
		}
	}
}

func TestEtcdSecurityGroupRules(t *testing.T) {
	rec := runEtcd(t, 3)
	members, clients := "c1-etcd-id", "c1-etcd-client-id"
	expectIngress(t, groupIngress(t, rec, members), map[portFrom]int{{2379, clients}: 1, {2379, members}: 1, {2380, members}: 1})
}

type statement struct {
	Sid       string
	Effect    string
	Action    []string
	Resource  any
	Condition map[string]map[string]any
}

func TestEtcdIAMScopedToOwnMember(t *testing.T) {
	rec := runEtcd(t, 3)
	var policies []mockrun.Resource
	for _, p := range rec.OfType("aws:iam/rolePolicy:RolePolicy") {
		if !strings.HasSuffix(p.Name, "-bootstrap") { // every node's; TestEveryNodeReportsItsOwnLaunch
			policies = append(policies, p)
		}
	}
	if len(policies) != 3 {
		t.Fatalf("%d member policies, want 3", len(policies))
	}
	for _, p := range policies {
		var doc struct{ Statement []statement }
		if err := json.Unmarshal([]byte(p.String("policy")), &doc); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		member := strings.TrimPrefix(p.Name, "c1-etcd-") // e.g. a-eu-west-1a
		letter := member[:1]
		sids := map[string]statement{}
		for _, s := range doc.Statement {
			sids[s.Sid] = s
			// CloudWatch metrics have no ARN; the namespace condition scopes them.
			scoped := len(s.Action) == 1 && s.Action[0] == "cloudwatch:PutMetricData" && strings.Contains(fmt.Sprint(s.Condition), "cloudwatch:namespace:kubeha")
			if s.Resource == "*" && !scoped && (len(s.Action) != 1 || !strings.Contains(s.Action[0], ":Describe")) {
				t.Errorf("%s: %v on every resource; only read-only Describe and kubeha's metrics may use *", p.Name, s.Action)
			}
		}
		if r := sids["AttachOwnVolume"].Resource; r != "arn:aws:mock:::aws:ebs/volume:Volume/c1-etcd-"+member+"-data" {
			t.Errorf("%s may attach %v, want only its own volume", p.Name, r)
		}
		if c := sids["AttachToOwnInstance"].Condition["StringEquals"]["aws:ResourceTag/kubeha.io/etcd-member"]; c != "etcd-"+letter {
			t.Errorf("%s may attach to instances tagged %v, want etcd-%s", p.Name, c, letter)
		}
		if r := sids["ReadOwnSecret"].Resource; r != "arn:aws:mock:::aws:secretsmanager/secret:Secret/c1-etcd-"+member {
			t.Errorf("%s may read secret %v, want only its own", p.Name, r)
		}
		names := sids["UpsertOwnRecord"].Condition["ForAllValues:StringEquals"]["route53:ChangeResourceRecordSetsNormalizedRecordNames"]
		if list, ok := names.([]any); !ok || len(list) != 1 || list[0] != "etcd-"+letter+".c1.internal" {
			t.Errorf("%s may change DNS records %v, want only etcd-%s.c1.internal", p.Name, names, letter)
		}
		if sids["Snapshots"].Resource != "arn:aws:mock:::aws:s3/bucketV2:BucketV2/c1-etcd-backups/snapshots/*" {
			t.Errorf("%s writes to %v, want the backup bucket's snapshots/ only", p.Name, sids["Snapshots"].Resource)
		}
		if a := sids["FindMembersGroups"].Action; !slices.Equal(a, []string{"autoscaling:DescribeAutoScalingGroups"}) {
			t.Errorf("%s may %v to find a silent member's group, want DescribeAutoScalingGroups only", p.Name, a)
		}
	}
}

// Every member's group holds a leaving instance on its leave hook, which
// the member completes once the others are healthy voters (or another
// member, once it no longer answers); AWS lets it go after the hook's
// timeout whatever happened.
func TestEtcdMembersLeaveThroughTheirHook(t *testing.T) {
	rec := runEtcd(t, 3)
	groups := map[string]bool{}
	for _, g := range rec.OfType("aws:autoscaling/group:Group") {
		groups[g.Name] = true
	}
	hooks := rec.OfType("aws:autoscaling/lifecycleHook:LifecycleHook")
	if len(groups) != 3 || len(hooks) != 3 {
		t.Fatalf("%d member groups and %d lifecycle hooks, want 3 of each", len(groups), len(hooks))
	}
	for _, h := range hooks {
		group := strings.TrimSuffix(h.Name, "-leave")
		if !groups[group] || !strings.HasPrefix(h.String("autoscalingGroupName"), group+"-") || h.String("name") != bootstrap.EtcdLeaveHook ||
			h.String("lifecycleTransition") != "autoscaling:EC2_INSTANCE_TERMINATING" || h.String("defaultResult") != "CONTINUE" ||
			h.Get("heartbeatTimeout").NumberValue() != bootstrap.EtcdLeaveHookTimeout.Seconds() {
			t.Errorf("%s: group %q, hook %q, %q, %q after %v s", h.Name, h.String("autoscalingGroupName"), h.String("name"),
				h.String("lifecycleTransition"), h.String("defaultResult"), h.Get("heartbeatTimeout"))
		}
	}
}

func TestEtcdBackupBucket(t *testing.T) {
	rec := runEtcd(t, 3)
	bucket := "c1-etcd-backups-0123456789"
	one := func(typ string) mockrun.Resource {
		t.Helper()
		var found []mockrun.Resource
		for _, r := range rec.OfType(typ) {
			if r.String("bucket") == bucket {
				found = append(found, r)
			}
		}
		if len(found) != 1 {
			t.Fatalf("want one %s on the backup bucket, got %d", typ, len(found))
		}
		return found[0]
	}
	if v := one("aws:s3/bucketVersioningV2:BucketVersioningV2"); v.Get("versioningConfiguration", "status").StringValue() != "Enabled" {
		t.Error("versioning is not enabled")
	}
	sse := one("aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
	if d := sse.Get("rules", "0", "applyServerSideEncryptionByDefault"); d.ObjectValue()["sseAlgorithm"].StringValue() != "aws:kms" ||
		d.ObjectValue()["kmsMasterKeyId"].StringValue() != "arn:aws:kms:eu-west-1:123456789012:key/k1" {
		t.Errorf("encryption = %v, want aws:kms with the cluster key", d)
	}
	block := one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
	for _, k := range []string{"blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"} {
		if !block.Bool(k) {
			t.Errorf("public access block %s is off", k)
		}
	}
	life := one("aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2")
	if d := life.Get("rules", "0", "expiration", "days"); d.NumberValue() != 21 {
		t.Errorf("snapshots expire after %v days, want the configured 21", d)
	}
	if p := one("aws:s3/bucketPolicy:BucketPolicy"); !strings.Contains(p.String("policy"), `"aws:SecureTransport":"false"`) {
		t.Errorf("bucket policy does not deny plain HTTP: %s", p.String("policy"))
	}
}

func TestEtcdSecretsAreSecret(t *testing.T) {
	rec := runEtcd(t, 3)
	versions := rec.OfType("aws:secretsmanager/secretVersion:SecretVersion")
	if len(versions) != 4 {
		t.Fatalf("%d secret versions, want one per member and one for API server clients", len(versions))
	}
	for _, v := range versions {
		if !v.IsSecret("secretString") {
			t.Errorf("%s: the secret string is not a Pulumi secret", v.Name)
		}
		if !strings.Contains(v.String("secretString"), "PRIVATE KEY") {
			t.Errorf("%s holds no private key", v.Name)
		}
		if v.Name == "c1-etcd-client" {
			var files map[string]string
			if err := json.Unmarshal([]byte(v.String("secretString")), &files); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"ca.crt", "client.crt", "client.key", "healthcheck.crt", "healthcheck.key"} {
				if files[f] == "" {
					t.Errorf("client secret lacks %s", f)
				}
			}
		}
	}
	for _, s := range rec.OfType("aws:secretsmanager/secret:Secret") {
		if s.String("kmsKeyId") != "arn:aws:kms:eu-west-1:123456789012:key/k1" {
			t.Errorf("%s is not encrypted with the cluster key", s.Name)
		}
	}
}

func TestEtcdLaunchTemplates(t *testing.T) {
	rec := runEtcd(t, 3)
	templates := rec.OfType("aws:ec2/launchTemplate:LaunchTemplate")
	if len(templates) != 3 {
		t.Fatalf("%d launch templates, want 3", len(templates))
	}
	for _, lt := range templates {
		checkNodeBaseline(t, lt)
		raw, err := base64.StdEncoding.DecodeString(lt.String("userData"))
		if err != nil {
			t.Fatalf("%s: user-data is not base64: %v", lt.Name, err)
		}
		data, err := bootstrap.ReadUserData(raw)
		if err != nil {
			t.Fatalf("%s: %v", lt.Name, err)
		}
		letter := strings.TrimPrefix(lt.Name, "c1-etcd-")[:1]
		for _, want := range []string{"#cloud-config", "MEMBER_NAME=etcd-" + letter, "VOLUME_ID=c1-etcd-" + strings.TrimPrefix(lt.Name, "c1-etcd-") + "-data-id"} {
			if !strings.Contains(string(data), want) {
				t.Errorf("%s user-data lacks %q", lt.Name, want)
			}
		}
		if strings.Contains(string(data), "PRIVATE KEY") {
			t.Errorf("%s user-data carries a private key; nodes must fetch keys from Secrets Manager", lt.Name)
		}
	}
}

func TestEtcdRejectsBadArgs(t *testing.T) {
	for name, c := range map[string]struct {
		mutate func(*EtcdClusterArgs)
		field  string
	}{
		"even members":    {func(a *EtcdClusterArgs) { a.Members = 4 }, "EtcdClusterArgs.Members"},
		"two zones":       {func(a *EtcdClusterArgs) { a.Zones = a.Zones[:2]; a.SubnetIDs = a.SubnetIDs[:2] }, "EtcdClusterArgs.Zones"},
		"subnets":         {func(a *EtcdClusterArgs) { a.SubnetIDs = a.SubnetIDs[:1] }, "EtcdClusterArgs.SubnetIDs"},
		"retention":       {func(a *EtcdClusterArgs) { a.BackupRetentionDays = -1 }, "EtcdClusterArgs.BackupRetentionDays"},
		"volume too big":  {func(a *EtcdClusterArgs) { a.VolumeSizeGiB = 2048 }, "EtcdClusterArgs.VolumeSizeGiB"},
		"uppercase name":  {func(a *EtcdClusterArgs) { a.ClusterName = "Acme-Payments" }, "EtcdClusterArgs.ClusterName"},
		"not an AMI":      {func(a *EtcdClusterArgs) { a.ImageID = "debian-12" }, "EtcdClusterArgs.ImageID"},
		"no KMS key":      {func(a *EtcdClusterArgs) { a.KMSKeyArn = nil }, "EtcdClusterArgs.KMSKeyArn"},
		"interval 1 min":  {func(a *EtcdClusterArgs) { a.BackupIntervalMinutes = 1 }, "EtcdClusterArgs.BackupIntervalMinutes"},
		"bad instance ty": {func(a *EtcdClusterArgs) { a.InstanceType = "m6i" }, "EtcdClusterArgs.InstanceType"},
	} {
		args := &EtcdClusterArgs{
			ZonalWiring: ZonalWiring{ClusterName: "c1", Region: "eu-west-1", Zones: testZones, VpcID: pulumi.String("vpc-1"), KMSKeyArn: pulumi.String("k"),
				SubnetIDs: []pulumi.StringInput{pulumi.String("s-a"), pulumi.String("s-b"), pulumi.String("s-c")}, Assets: &NodeAssets{}},
			EtcdOptions: EtcdOptions{InstanceType: "m6i.large", VolumeSizeGiB: 20, BackupIntervalMinutes: 15, BackupRetentionDays: 7},
		}
		c.mutate(args)
		rec, err := mockrun.Run("kubeha", "test", nil, func(ctx *pulumi.Context) error {
			_, err := NewEtcdCluster(ctx, "c1-etcd", args)
			return err
		})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: got %v, want a FieldError naming %s", name, err, c.field)
		}
		if n := len(rec.Resources()); n != 0 {
			t.Errorf("%s: %d resources declared before the error", name, n)
		}
	}
}

// checkNodeBaseline: IMDSv2 only, with hop limit 1 on every node, an
// encrypted root volume, no SSH key.
func checkNodeBaseline(t *testing.T, lt mockrun.Resource) {
	t.Helper()
	if lt.Get("metadataOptions", "httpTokens").StringValue() != "required" || lt.Get("metadataOptions", "httpPutResponseHopLimit").NumberValue() != 1 {
		t.Errorf("%s: IMDSv2 not required with hop limit 1", lt.Name)
	}
	if lt.Get("blockDeviceMappings", "0", "ebs", "encrypted").StringValue() != "true" {
		t.Errorf("%s: root volume not encrypted", lt.Name)
	}
	if lt.String("keyName") != "" {
		t.Errorf("%s has an SSH key", lt.Name)
	}
}

// What a member's secret holds works as etcd uses it: under mocks the
// certificates are real, so the rehearsal can hand them to nodes.
func TestEtcdMemberSecretWorks(t *testing.T) {
	files := secretFiles(t, runEtcd(t, 3), "c1-etcd-a-eu-west-1a")
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(files["ca.crt"])) {
		t.Fatal("ca.crt is not a certificate")
	}
	for _, pair := range [][2]string{{"server.crt", "server.key"}, {"peer.crt", "peer.key"}} {
		cert, err := tls.X509KeyPair([]byte(files[pair[0]]), []byte(files[pair[1]]))
		if err != nil {
			t.Fatalf("%s with %s: %v", pair[0], pair[1], err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "etcd-a.c1.internal", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s does not verify for etcd-a.c1.internal against ca.crt: %v", pair[0], err)
		}
	}
}
