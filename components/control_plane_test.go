package components

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/mockrun"
)

func controlPlaneArgs(wiring ZonalWiring, etcd *EtcdCluster, api *ApiLoadBalancer) *ControlPlaneArgs {
	return &ControlPlaneArgs{
		ZonalWiring:       wiring,
		KubernetesVersion: "v1.36.3",
		Etcd:              etcd, LoadBalancer: api, PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12",
		ControlPlaneOptions: ControlPlaneOptions{InstanceType: "m6i.large",
			LeaderElection: LeaderElection{LeaseDurationSeconds: 20, RenewDeadlineSeconds: 12, RetryPeriodSeconds: 3}},
	}
}

// runControlPlane declares the control plane with what it stands on, as
// the stack does; edit changes its args first.
func runControlPlane(t *testing.T, edit func(*ControlPlaneArgs), inspect ...func(*pulumi.Context, *ControlPlane) error) (*mockrun.Recorder, error) {
	t.Helper()
	return mockrun.Run("kubeha", "test", nil, func(ctx *pulumi.Context) error {
		net, wiring, etcd, err := declareEtcd(ctx, 3)
		if err != nil {
			return err
		}
		lb := lbArgs()
		lb.VpcID, lb.VpcCidr, lb.SubnetIDs = net.VpcID, net.VpcCidr, wiring.SubnetIDs
		api, err := NewApiLoadBalancer(ctx, "c1-api", lb)
		if err != nil {
			return err
		}
		args := controlPlaneArgs(wiring, etcd, api)
		if edit != nil {
			edit(args)
		}
		cp, err := NewControlPlane(ctx, "c1-control-plane", args)
		if err != nil {
			return err
		}
		for _, f := range inspect {
			if err := f(ctx, cp); err != nil {
				return err
			}
		}
		return nil
	})
}

func mustRunControlPlane(t *testing.T) *mockrun.Recorder {
	t.Helper()
	rec, err := runControlPlane(t, nil)
	if err != nil {
		t.Fatalf("NewControlPlane: %v", err)
	}
	return rec
}

func controlPlaneGroups(rec *mockrun.Recorder) []mockrun.Resource {
	var out []mockrun.Resource
	for _, g := range rec.OfType("aws:autoscaling/group:Group") {
		if strings.HasPrefix(g.Name, "c1-control-plane-") {
			out = append(out, g)
		}
	}
	return out
}

func TestControlPlaneOneNodePerZoneInTargetGroup(t *testing.T) {
	rec := mustRunControlPlane(t)
	groups := controlPlaneGroups(rec)
	perZone := map[string]int{}
	for _, g := range groups {
		subnets := g.Strings("vpcZoneIdentifiers")
		if len(subnets) != 1 {
			t.Fatalf("%s spans subnets %v, want exactly one", g.Name, subnets)
		}
		zone := subnetZone(t, rec, subnets[0])
		perZone[zone]++
		if !strings.HasSuffix(g.Name, "-"+zone) || !strings.Contains(subnets[0], "private") {
			t.Errorf("%s is in %s (%s), want its own zone's private subnet", g.Name, subnets[0], zone)
		}
		if g.Get("minSize").NumberValue() != 1 || g.Get("maxSize").NumberValue() != 1 {
			t.Errorf("%s size %v..%v, want exactly 1", g.Name, g.Get("minSize"), g.Get("maxSize"))
		}
		if tgs := g.Strings("targetGroupArns"); len(tgs) != 1 || !strings.Contains(tgs[0], "targetGroup:TargetGroup/c1-api") {
			t.Errorf("%s target groups %v, want the API load balancer's", g.Name, tgs)
		}
		// The readiness gate: wait for a node that passes /readyz through
		// the LB, but never recycle a node on LB health.
		if g.Get("waitForElbCapacity").NumberValue() != 1 || g.String("healthCheckType") != "EC2" {
			t.Errorf("%s waitForElbCapacity=%v healthCheckType=%s, want 1 and EC2", g.Name, g.Get("waitForElbCapacity"), g.String("healthCheckType"))
		}
	}
	for _, z := range testZones {
		if perZone[z] != 1 {
			t.Errorf("zone %s has %d control-plane nodes, want 1 (all: %v)", z, perZone[z], perZone)
		}
	}
}

func TestControlPlaneSecurityGroupRules(t *testing.T) {
	rec := mustRunControlPlane(t)
	cp, lb := "c1-control-plane-id", "c1-api-id"
	expectIngress(t, groupIngress(t, rec, cp), map[portFrom]int{{6443, lb}: 1, {6443, cp}: 1, {10250, cp}: 1})
	// Nodes carry the group etcd admits on 2379.
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if !strings.HasPrefix(lt.Name, "c1-control-plane-") {
			continue
		}
		if sgs := strings.Join(lt.Strings("vpcSecurityGroupIds"), ","); sgs != cp+",c1-etcd-client-id" {
			t.Errorf("%s security groups %s, want the control plane's and etcd's client group", lt.Name, sgs)
		}
	}
}

func TestEveryLaunchTemplateRequiresIMDSv2(t *testing.T) {
	rec := mustRunControlPlane(t)
	templates := rec.OfType("aws:ec2/launchTemplate:LaunchTemplate")
	if len(templates) != 6 {
		t.Fatalf("%d launch templates, want 3 etcd + 3 control plane", len(templates))
	}
	for _, lt := range templates {
		checkNodeBaseline(t, lt)
	}
}

func TestControlPlaneUserData(t *testing.T) {
	rec := mustRunControlPlane(t)
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if !strings.HasPrefix(lt.Name, "c1-control-plane-") {
			continue
		}
		data := decodeUserData(t, lt)
		zone := strings.TrimPrefix(lt.Name, "c1-control-plane-")
		for _, want := range []string{
			"controlPlaneEndpoint: c1-api-0123456789.elb.eu-west-1.amazonaws.com:6443",
			"https://etcd-a.c1.internal:2379", "ZONE=" + zone, "INIT_ZONE=eu-west-1a",
			"leader-elect-lease-duration\n", "value: 20s", "leaseDuration: 20s", "renewDeadline: 12s", "retryPeriod: 3s",
			"topologyKey: topology.kubernetes.io/zone", "SECRET_ID=arn:aws:mock:::aws:secretsmanager/secret:Secret/c1-control-plane",
			// Every image kubeadm checks for is imported before it runs,
			// the sandbox image included: no registry at boot.
			"/" + bootstrap.PinnedAssets().PauseImage.Key + "#", "/" + bootstrap.PinnedAssets().APIServerImage.Key + "#",
		} {
			if !strings.Contains(data, want) {
				t.Errorf("%s user-data lacks %q", lt.Name, want)
			}
		}
		// Secrets stay in Secrets Manager: the mocked encryption key is
		// zeros.
		for _, secret := range []string{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "PRIVATE KEY"} {
			if strings.Contains(data, secret) {
				t.Errorf("%s user-data carries a secret (%s)", lt.Name, secret)
			}
		}
		if tokens := mockrun.JoinTokens(data, bootstrap.BootstrapTokenPlaceholder); len(tokens) > 0 {
			t.Errorf("%s user-data carries a join token %v", lt.Name, tokens)
		}
	}
}

func decodeUserData(t *testing.T, lt mockrun.Resource) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(lt.String("userData"))
	if err != nil {
		t.Fatalf("%s: user-data is not base64: %v", lt.Name, err)
	}
	doc, err := bootstrap.ReadUserData(raw)
	if err != nil {
		t.Fatalf("%s: %v", lt.Name, err)
	}
	return string(doc)
}

func TestControlPlaneSecrets(t *testing.T) {
	rec := mustRunControlPlane(t)
	version, err := rec.Named("aws:secretsmanager/secretVersion:SecretVersion", "c1-control-plane")
	if err != nil {
		t.Fatal(err)
	}
	if !version.IsSecret("secretString") {
		t.Error("the control-plane secret is not a Pulumi secret")
	}
	var files map[string]string
	if err := json.Unmarshal([]byte(version.String("secretString")), &files); err != nil {
		t.Fatal(err)
	}
	for _, name := range bootstrap.ControlPlaneSecretFiles {
		if files[name] == "" {
			t.Errorf("the control-plane secret lacks %s", name)
		}
	}
	if len(files) != len(bootstrap.ControlPlaneSecretFiles) {
		t.Errorf("the control-plane secret has %d entries, want exactly %d", len(files), len(bootstrap.ControlPlaneSecretFiles))
	}
	if !mockrun.JoinTokenPattern.MatchString(files["bootstrap-token"]) {
		t.Errorf("bootstrap token %q is not id.secret", files["bootstrap-token"])
	}
	join, err := rec.Named("aws:secretsmanager/secretVersion:SecretVersion", "c1-control-plane-join")
	if err != nil {
		t.Fatal(err)
	}
	if s := join.String("secretString"); strings.Contains(s, "PRIVATE KEY") || strings.Contains(s, "bootstrap-token") || !strings.Contains(s, "pki/ca.crt") {
		t.Errorf("the workers' join secret must hold the CA only (each worker joins with a token of its own): %s", s)
	}
	for _, r := range rec.OfType("random:index/randomString:RandomString") {
		if r.Bool("upper") || r.Bool("special") {
			t.Errorf("%s may hold characters a kubeadm token may not", r.Name)
		}
	}
}

// Raising joinTokenGeneration draws a new ID and a new secret: kubeadm
// refuses a new secret under an ID it holds, so a rotation that kept the
// ID would leave the API with the old token and every new node unable to
// join.
func TestJoinTokenRotationReplacesTheWholeToken(t *testing.T) {
	token := func(generation int) string {
		t.Helper()
		rec, err := runControlPlane(t, func(a *ControlPlaneArgs) { a.JoinTokenGeneration = generation })
		if err != nil {
			t.Fatal(err)
		}
		files := secretFiles(t, rec, "c1-control-plane")
		for _, r := range rec.OfType("random:index/randomString:RandomString") {
			if got := r.Get("keepers", "generation").StringValue(); got != fmt.Sprint(generation) {
				t.Errorf("generation %d: %s is kept by generation %q", generation, r.Name, got)
			}
		}
		return files["bootstrap-token"]
	}
	first, rotated := token(1), token(2)
	if first == rotated || !mockrun.JoinTokenPattern.MatchString(rotated) {
		t.Fatalf("generation 2's token %q, generation 1's %q: want a new token", rotated, first)
	}
	if strings.Split(first, ".")[0] == strings.Split(rotated, ".")[0] || strings.Split(first, ".")[1] == strings.Split(rotated, ".")[1] {
		t.Errorf("rotation kept part of the token: %q then %q", first, rotated)
	}
	if token(1) != first {
		t.Error("the same generation drew another token: every `pulumi up` would rotate it")
	}
	if _, err := runControlPlane(t, func(a *ControlPlaneArgs) { a.JoinTokenGeneration = -1 }); err == nil || !strings.Contains(err.Error(), "JoinTokenGeneration") {
		t.Errorf("generation -1: %v, want an error naming JoinTokenGeneration", err)
	}
}

func TestControlPlaneKubeconfigIsSecret(t *testing.T) {
	var result internals.UnsafeAwaitOutputResult
	_, err := runControlPlane(t, func(a *ControlPlaneArgs) {}, func(ctx *pulumi.Context, cp *ControlPlane) error {
		var err error
		result, err = internals.UnsafeAwaitOutput(ctx.Context(), cp.Kubeconfig)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	config, _ := result.Value.(string)
	if !result.Secret || !strings.Contains(config, "server: https://c1-api-0123456789.elb.eu-west-1.amazonaws.com:6443") {
		t.Errorf("kubeconfig secret=%v, content:\n%s\nwant a Pulumi secret for the load balancer's endpoint", result.Secret, config)
	}
}

// The control-plane node's policy and the add-ons' own: every change to
// an existing resource is limited to the cluster's.
func TestPoliciesScopedByClusterTag(t *testing.T) {
	for name, policy := range map[string]string{
		"control plane":            controlPlanePolicy("arn:secret", "arn:key", "eu-west-1", (&NodeAssets{}).readPolicy("arn:assets", bootstrap.PinnedAssets().Kubelet)),
		"cloud-controller-manager": cloudControllerManagerPolicy("c1"),
		"EBS CSI driver":           ebsCSIDriverPolicy("c1"),
		"cluster-autoscaler":       clusterAutoscalerPolicy("c1"),
	} {
		var doc struct{ Statement []statement }
		if err := json.Unmarshal([]byte(policy), &doc); err != nil {
			t.Fatal(err)
		}
		for _, s := range doc.Statement {
			for _, a := range s.Action {
				verb := a[strings.Index(a, ":")+1:]
				mutating := !strings.HasPrefix(verb, "Describe") && !strings.HasPrefix(verb, "Get") && !strings.HasPrefix(verb, "Create") && verb != "AddTags"
				if mutating && s.Condition == nil && s.Resource == "*" && s.Effect == "Allow" {
					t.Errorf("%s: %s: %s may change any resource; want it scoped to kubernetes.io/cluster/c1", name, s.Sid, a)
				}
			}
			if strings.HasPrefix(s.Sid, "ChangeOwned") && s.Condition["StringEquals"]["aws:ResourceTag/kubernetes.io/cluster/c1"] != "owned" {
				t.Errorf("%s: %s condition %v, want the cluster tag", name, s.Sid, s.Condition)
			}
			if s.Sid == "ScaleWorkerGroups" && s.Condition["StringEquals"]["aws:ResourceTag/k8s.io/cluster-autoscaler/c1"] != "owned" {
				t.Errorf("cluster-autoscaler may scale %v, want only groups tagged k8s.io/cluster-autoscaler/c1", s.Condition)
			}
			if s.Sid == "CreateOwnedVolumes" && s.Condition["StringEquals"]["aws:RequestTag/kubernetes.io/cluster/c1"] != "owned" {
				t.Errorf("volumes may be created with %v, want the cluster tag required", s.Condition)
			}
			if s.Sid == "ReadOwnSecret" && s.Resource != "arn:secret" {
				t.Errorf("secret read on %v, want the node's own secret only", s.Resource)
			}
		}
	}
}

// The drainer lists the worker groups' instances (leaving and launching)
// with DescribeAutoScalingGroups, which takes no resource scope.
func TestControlPlanePolicyFindsWorkerGroups(t *testing.T) {
	policy := controlPlanePolicy("arn:secret", "arn:key", "eu-west-1", (&NodeAssets{}).readPolicy("arn:assets", bootstrap.PinnedAssets().Kubelet))
	var doc struct{ Statement []statement }
	if err := json.Unmarshal([]byte(policy), &doc); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(doc.Statement, func(s statement) bool { return s.Sid == "FindWorkerGroups" })
	if i < 0 || !slices.Equal(doc.Statement[i].Action, []string{"autoscaling:DescribeAutoScalingGroups"}) || doc.Statement[i].Effect != "Allow" {
		t.Errorf("statements %+v: want FindWorkerGroups allowing autoscaling:DescribeAutoScalingGroups", doc.Statement)
	}
}

func TestControlPlaneRejectsBadArgs(t *testing.T) {
	le := func(lease, renew, retry int) func(*ControlPlaneArgs) {
		return func(a *ControlPlaneArgs) { a.LeaderElection = LeaderElection{lease, renew, retry} }
	}
	for name, c := range map[string]struct {
		edit  func(*ControlPlaneArgs)
		field string
	}{
		"version":       {func(a *ControlPlaneArgs) { a.KubernetesVersion = "1.36" }, "ControlPlaneArgs.KubernetesVersion"},
		"two zones":     {func(a *ControlPlaneArgs) { a.Zones, a.SubnetIDs = a.Zones[:2], a.SubnetIDs[:2] }, "ControlPlaneArgs.Zones"},
		"subnets":       {func(a *ControlPlaneArgs) { a.SubnetIDs = a.SubnetIDs[:1] }, "ControlPlaneArgs.SubnetIDs"},
		"no etcd":       {func(a *ControlPlaneArgs) { a.Etcd = nil }, "ControlPlaneArgs.Etcd"},
		"bad type":      {func(a *ControlPlaneArgs) { a.InstanceType = "large" }, "ControlPlaneArgs.InstanceType"},
		"bad name":      {func(a *ControlPlaneArgs) { a.ClusterName = "Acme-Payments" }, "ControlPlaneArgs.ClusterName"},
		"lease < renew": {le(5, 12, 3), "ControlPlaneArgs.LeaderElection.LeaseDurationSeconds"},
		// client-go refuses renew <= 1.2 x retry at start: 6 <= 6.
		"renew within jitter of retry": {le(7, 6, 5), "ControlPlaneArgs.LeaderElection.RenewDeadlineSeconds"},
		"retry zero":                   {le(20, 12, -1), "ControlPlaneArgs.LeaderElection.RetryPeriodSeconds"},
	} {
		t.Run(name, func(t *testing.T) {
			rec, err := runControlPlane(t, c.edit)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("error %v, want a FieldError naming %s", err, c.field)
			}
			if n := len(controlPlaneGroups(rec)); n != 0 {
				t.Errorf("%d control-plane groups declared despite the error", n)
			}
		})
	}
	// Just above client-go's limit starts.
	if _, err := runControlPlane(t, le(8, 7, 5)); err != nil {
		t.Errorf("lease 8, renew 7 > 1.2 x 5, retry 5: %v", err)
	}
}

// Under mocks the control plane's shared secret holds keys that work, as
// the rehearsal's nodes use them: kube-apiserver refuses a service-account
// public key it cannot parse.
func TestControlPlaneSecretKeysWork(t *testing.T) {
	files := secretFiles(t, mustRunControlPlane(t), "c1-control-plane")
	block, _ := pem.Decode([]byte(files["pki/sa.pub"]))
	if block == nil {
		t.Fatalf("pki/sa.pub is not PEM: %q", files["pki/sa.pub"])
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		t.Errorf("pki/sa.pub: %v", err)
	}
	if _, err := tls.X509KeyPair([]byte(files["pki/ca.crt"]), []byte(files["pki/ca.key"])); err != nil {
		t.Errorf("pki/ca.crt with pki/ca.key: %v", err)
	}
}

// TestCertificateValidityReachesKubeadm: the option is kubeadm's
// certificateValidityPeriod on every node, with the renewal timer checking
// a twentieth of it apart (at most 12 hours); out of range or not a duration, it is refused
// naming the key, the value and what is allowed.
func TestCertificateValidityReachesKubeadm(t *testing.T) {
	rec, err := runControlPlane(t, func(a *ControlPlaneArgs) { a.CertificateValidity = "720h" })
	if err != nil {
		t.Fatal(err)
	}
	nodes := 0
	for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
		if typ, _ := rec.Component(lt); typ != "kubeha:index:ControlPlane" {
			continue
		}
		nodes++
		doc := decodeUserData(t, lt)
		if !strings.Contains(doc, "certificateValidityPeriod: 720h0m0s") || !strings.Contains(doc, "OnUnitInactiveSec=43200s") {
			t.Errorf("%s: no 720h validity, or no renewal check every 12 h (a twentieth, 36 h, capped)", lt.Name)
		}
	}
	if nodes != 3 {
		t.Errorf("%d control-plane launch templates, want 3", nodes)
	}
	for _, bad := range []string{"5m", "9000h", "a year"} {
		if _, err := runControlPlane(t, func(a *ControlPlaneArgs) { a.CertificateValidity = bad }); err == nil ||
			!strings.Contains(err.Error(), "CertificateValidity") || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "from 10m to 8760h") {
			t.Errorf("validity %q: %v, want an error naming CertificateValidity, the value and the range", bad, err)
		}
	}
}

// secretFiles is the files the Secrets Manager secret name holds, as the
// program declared its version.
func secretFiles(t *testing.T, rec *mockrun.Recorder, name string) map[string]string {
	t.Helper()
	version, err := rec.Named("aws:secretsmanager/secretVersion:SecretVersion", name)
	if err != nil {
		t.Fatal(err)
	}
	var files map[string]string
	if err := json.Unmarshal([]byte(version.String("secretString")), &files); err != nil {
		t.Fatal(err)
	}
	return files
}
