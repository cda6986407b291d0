package bootstrap

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

func testControlPlane() ControlPlane {
	return ControlPlane{
		ClusterName: "kubeha-prod", KubernetesVersion: "v1.36.3", Endpoint: "kubeha-prod-api-0123456789.elb.eu-west-1.amazonaws.com",
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12",
		EtcdEndpoints:  []string{"https://etcd-a.kubeha-prod.internal:2379", "https://etcd-b.kubeha-prod.internal:2379", "https://etcd-c.kubeha-prod.internal:2379"},
		LeaderElection: LeaderElection{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second},
		InitZone:       "eu-west-1a",
		// As every shipped stack: the add-on applier and the API tunnel.
		ApplyAddons: true, APITunnel: true,
		ServiceAccountIssuer: "https://kubeha-prod-oidc-0123456789.s3.eu-west-1.amazonaws.com",
	}
}

// The API server signs service-account tokens as the bucket's issuer, whose
// key set it names, and still accepts kubeadm's issuer's tokens.
func TestAPIServerIssuesServiceAccountTokensAsTheBucket(t *testing.T) {
	init, err := testControlPlane().KubeadmInit()
	if err != nil {
		t.Fatal(err)
	}
	want := "- name: service-account-issuer\n      value: https://kubeha-prod-oidc-0123456789.s3.eu-west-1.amazonaws.com\n" +
		"    - name: service-account-issuer\n      value: https://kubernetes.default.svc.cluster.local\n" +
		"    - name: service-account-jwks-uri\n      value: https://kubeha-prod-oidc-0123456789.s3.eu-west-1.amazonaws.com/openid/v1/jwks\n"
	if !strings.Contains(init, want) {
		t.Errorf("kubeadm init config lacks, in this order:\n%s\nin:\n%s", want, init)
	}
}

// testAssets are kubeha's pins in a bucket, with made-up digests for the
// image archives, as S3 would record them.
func testAssets() ResolvedAssets {
	a := ResolvedAssets{Assets: PinnedAssets(), Bucket: "kubeha-prod-assets-0123456789", Recorded: map[string]string{}}
	for i, image := range a.Images() {
		a.Recorded[image.Key] = strings.Repeat(string(rune('a'+i)), 64)
	}
	return a
}

func controlPlaneNode(t *testing.T, c ControlPlane, zone string) (Node, *pki.Pair) {
	t.Helper()
	ca, err := pki.Issue(pki.KubernetesCA(c.ClusterName))
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Node(ControlPlaneParams{Zone: zone, Region: "eu-west-1", CACertPEM: string(ca.CertPEM),
		SecretID: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kubeha-prod-control-plane-AbCdEf", Assets: testAssets()})
	if err != nil {
		t.Fatal(err)
	}
	return n, ca
}

// The discovery hash must be what kubeadm documents: openssl's sha256 of
// the CA's DER public key.
func TestCACertHashMatchesOpenSSL(t *testing.T) {
	openssl := tools.Need(t, "openssl")
	ca, err := pki.Issue(pki.KubernetesCA("c1"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	script := openssl + " x509 -pubkey -noout -in " + path + " | " + openssl + " pkey -pubin -outform der | sha256sum | cut -d' ' -f1"
	out, err := exec.Command("sh", "-c", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	got, err := CACertHash(string(ca.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:" + strings.TrimSpace(string(out)); got != want {
		t.Errorf("CACertHash = %s, openssl says %s", got, want)
	}
	if _, err := CACertHash("not a certificate"); err == nil {
		t.Error("CACertHash accepted garbage")
	}
}

func TestSchedulerConfigSpreadsOverZones(t *testing.T) {
	text, err := testControlPlane().SchedulerConfig()
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		LeaderElection map[string]any `yaml:"leaderElection"`
		Profiles       []struct {
			PluginConfig []struct {
				Name string
				Args struct {
					DefaultingType     string           `yaml:"defaultingType"`
					DefaultConstraints []map[string]any `yaml:"defaultConstraints"`
				}
			} `yaml:"pluginConfig"`
		}
	}
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	spread := cfg.Profiles[0].PluginConfig[0]
	if spread.Name != "PodTopologySpread" || spread.Args.DefaultingType != "List" ||
		spread.Args.DefaultConstraints[0]["topologyKey"] != ZoneLabel || spread.Args.DefaultConstraints[0]["maxSkew"] != 1 {
		t.Errorf("scheduler spreading = %+v, want a default zone constraint", spread)
	}
	for k, want := range map[string]any{"leaderElect": true, "leaseDuration": "15s", "renewDeadline": "10s", "retryPeriod": "2s", "resourceLock": "leases"} {
		if cfg.LeaderElection[k] != want {
			t.Errorf("scheduler leaderElection.%s = %v, want %v", k, cfg.LeaderElection[k], want)
		}
	}
}

func TestControlPlaneNodeKeepsSecretsOut(t *testing.T) {
	n, ca := controlPlaneNode(t, testControlPlane(), "eu-west-1b")
	hash, _ := CACertHash(string(ca.CertPEM))
	join := n.File(kubeadmTemplateDir + "/kubeadm-join.yaml")
	if join == nil || !strings.Contains(join.Content, hash) || !strings.Contains(join.Content, "token: "+BootstrapTokenPlaceholder) {
		t.Fatalf("join template does not pin the CA (%s) with a token placeholder:\n%v", hash, join)
	}
	enc := n.File(kubeadmTemplateDir + "/encryption.yaml")
	if enc == nil || !strings.Contains(enc.Content, "secret: "+encryptionKeyPlaceholder) || !strings.Contains(enc.Content, "secretbox") {
		t.Errorf("encryption template = %v, want secretbox with the key placeholder", enc)
	}
	checkBootstrapUnit(t, n, NodeEnvPath, "control-plane-bootstrap.sh", "kubeha-prod")
	env := n.File(NodeEnvPath).Content
	for _, want := range []string{"ZONE=eu-west-1b", "INIT_ZONE=eu-west-1a", "API_ENDPOINT=kubeha-prod-api-0123456789.elb.eu-west-1.amazonaws.com",
		// Init or join is read from etcd, with the API server's etcd client
		// certificate, at the key kube-apiserver stores kubeadm's record.
		"ETCD_ENDPOINTS=https://etcd-a.kubeha-prod.internal:2379,https://etcd-b.kubeha-prod.internal:2379,https://etcd-c.kubeha-prod.internal:2379",
		"ETCD_CERT_FILE=/etc/kubernetes/pki/apiserver-etcd-client.crt", "KUBEADM_CONFIG_ETCD_KEY=/registry/configmaps/kube-system/kubeadm-config",
		"LOCAL_READY_URL=https://127.0.0.1:6443/readyz"} {
		if !strings.Contains(env, want) {
			t.Errorf("node.env lacks %s", want)
		}
	}
	// Binaries from the asset bucket, checked against upstream's digests or,
	// for the image archives, S3's.
	pinned := PinnedAssets()
	for _, want := range []string{
		"KUBELET_URL=s3://kubeha-prod-assets-0123456789/kubernetes/v1.36.3/kubelet", "KUBELET_SHA256=" + pinned.Kubelet.SHA256,
		"KUBEADM_SHA256=" + pinned.Kubeadm.SHA256, "CONTAINERD_ARCHIVE_SHA256=" + pinned.Containerd.SHA256, "RUNC_SHA256=" + pinned.Runc.SHA256,
		"CNI_PLUGINS_ARCHIVE_URL=s3://kubeha-prod-assets-0123456789/cni-plugins/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz",
		"CNI_PLUGINS_ARCHIVE_SHA256=" + pinned.CNIPlugins.SHA256, "CNI_BIN_DIR=/opt/cni/bin",
		"IMAGE_ARCHIVES='s3://kubeha-prod-assets-0123456789/kubernetes/v1.36.3/kube-apiserver.tar#" + strings.Repeat("a", 64) + ",",
	} {
		if !strings.Contains(env, want) {
			t.Errorf("node.env lacks %s", want)
		}
	}
	if !strings.Contains(env, "TOKEN_DESCRIPTION='"+BootstrapTokenDescription+"'\n") {
		t.Errorf("node.env does not quote the token description:\n%s", env)
	}
}

// TestControlPlaneUserDataPassesRealTools: cloud-init's schema, shellcheck
// on every script, and the EC2 size limit.
func TestControlPlaneUserDataPassesRealTools(t *testing.T) {
	n, _ := controlPlaneNode(t, testControlPlane(), "eu-west-1a")
	checkUserDataWithRealTools(t, "control-plane", n)
	// The timers' scripts, beside the user-data's that they source.
	n.Files = append(slices.Clone(n.Files), choreFiles(t)...)
	checkScripts(t, tools.Need(t, "shellcheck"), n)
}

// choreFiles are the scripts in ControlPlaneChores, as a node extracts
// them into ScriptDir.
func choreFiles(t *testing.T) []File {
	t.Helper()
	chores, err := ControlPlaneChores()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(chores.Data))
	if err != nil {
		t.Fatal(err)
	}
	var files []File
	for tr := tar.NewReader(zr); ; {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Path: ScriptDir + "/" + h.Name, Content: string(content), Mode: fmt.Sprintf("%04o", h.Mode)})
	}
}

// A control-plane node fetches its timers' scripts from the asset bucket
// (its user-data, 16 KB at most, has no room for them): one archive,
// named and checked by its digest, the same for the same scripts, holding
// each timer's script as user-data would (executable, without comment
// lines); the user-data carries none of them.
func TestControlPlaneChoresComeFromTheAssetBucket(t *testing.T) {
	chores, err := ControlPlaneChores()
	if err != nil {
		t.Fatal(err)
	}
	again, _ := ControlPlaneChores()
	sum := sha256.Sum256(chores.Data)
	if hex.EncodeToString(sum[:]) != chores.SHA256 || again.SHA256 != chores.SHA256 || !strings.Contains(chores.Key, chores.SHA256) {
		t.Errorf("archive %s (sha256 %s, again %s), want it named by its digest and the same each time", chores.Key, chores.SHA256, again.SHA256)
	}
	files := choreFiles(t)
	var names []string
	for _, f := range files {
		names = append(names, path.Base(f.Path))
		script, err := scripts.ReadFile("scripts/" + path.Base(f.Path))
		if err != nil || f.Content != withoutCommentLines(string(script)) || f.Mode != "0755" {
			t.Errorf("%s in the archive (mode %s) is not the script as user-data carries it: %v", f.Path, f.Mode, err)
		}
	}
	if !slices.Equal(names, controlPlaneChores) {
		t.Errorf("the archive holds %v, want %v", names, controlPlaneChores)
	}
	n, _ := controlPlaneNode(t, testControlPlane(), "eu-west-1a")
	for _, want := range []string{"CHORES_URL=s3://kubeha-prod-assets-0123456789/" + chores.Key, "CHORES_SHA256=" + chores.SHA256} {
		if !slices.Contains(n.Env, want) {
			t.Errorf("the node's settings lack %s", want)
		}
	}
	for _, name := range controlPlaneChores {
		if n.File(ScriptDir+"/"+name) != nil {
			t.Errorf("the user-data still carries %s", name)
		}
	}
	for _, unit := range []string{TokenSyncUnit, CSRApproverUnit, CertRenewalUnit, WorkerDrainUnit, "kubeha-addons.service"} {
		f := n.File("/etc/systemd/system/" + unit)
		if f == nil || !slices.ContainsFunc(controlPlaneChores, func(s string) bool { return strings.Contains(f.Content, ScriptDir+"/"+s) }) {
			t.Errorf("%s runs none of the archive's scripts: %+v", unit, f)
		}
	}
}

// checkUserDataWithRealTools checks a node's user-data as sent (gzipped
// when large) against the EC2 limit, its document with cloud-init's
// schema, and its scripts with shellcheck.
func checkUserDataWithRealTools(t *testing.T, role string, n Node) {
	t.Helper()
	cloudInit := tools.Need(t, "cloud-init")
	shellcheck := tools.Need(t, "shellcheck")
	doc, err := n.CloudConfig()
	if err != nil {
		t.Fatal(err)
	}
	data, err := n.UserData()
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > UserDataLimit {
		t.Errorf("%s user-data is %d bytes, over the %d EC2 limit", role, len(data), UserDataLimit)
	}
	t.Logf("MEASURED: %s user-data %d bytes as sent (cloud-config %d bytes; gzipped when over %d)", role, len(data), len(doc), UserDataLimit)
	// cloud-init gunzips user-data before reading it; its schema command
	// reads only the plain document.
	path := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cloudInit, "schema", "-c", path).CombinedOutput(); err != nil {
		t.Errorf("cloud-init schema rejects the %s user-data: %v\n%s", role, err, out)
	}
	checkKeys(t, doc)
	checkScripts(t, shellcheck, n)
}

func TestWorkerNodeJoinsThroughTheEndpoint(t *testing.T) {
	ca, err := pki.Issue(pki.KubernetesCA("c1"))
	if err != nil {
		t.Fatal(err)
	}
	w := Worker{ClusterName: "c1", KubernetesVersion: "v1.36.3", Endpoint: "c1-api.elb.example", Labels: map[string]string{"kubeha.io/pool": "spot", "a": "b"},
		Taints: []Taint{{Key: "kubeha.io/spot", Value: "true", Effect: "NoSchedule"}}}
	n, err := w.Node(WorkerParams{Zone: "eu-west-1c", Region: "eu-west-1", SecretID: "join", CACertPEM: string(ca.CertPEM), Assets: testAssets()})
	if err != nil {
		t.Fatal(err)
	}
	join := n.File(kubeadmTemplateDir + "/kubeadm-join.yaml").Content
	for _, want := range []string{"apiServerEndpoint: c1-api.elb.example:6443", "token: " + BootstrapTokenPlaceholder,
		"value: a=b,kubeha.io/pool=spot", "key: kubeha.io/spot", "effect: NoSchedule"} {
		if !strings.Contains(join, want) {
			t.Errorf("worker join config lacks %q:\n%s", want, join)
		}
	}
	if strings.Contains(join, "controlPlane") {
		t.Errorf("a worker's join config asks to join the control plane:\n%s", join)
	}
	// It imports its sandbox and kube-proxy images, so joining pulls
	// nothing from a registry; the control plane's are not its own.
	env := n.File(NodeEnvPath).Content
	for _, image := range testAssets().Images() {
		listed := strings.Contains(env, image.Key+"#")
		if want := slices.Contains(testAssets().WorkerImages(), image); listed != want {
			t.Errorf("worker node.env lists %s: %v, want %v:\n%s", image.Key, listed, want, env)
		}
	}
	checkBootstrapUnit(t, n, NodeEnvPath, "worker-bootstrap.sh", "c1")
}

// TestWorkerUserDataPassesRealTools: cloud-init's schema, shellcheck and
// the size limit; kubeadm's validation is in tests/ on every stack.
func TestWorkerUserDataPassesRealTools(t *testing.T) {
	ca, err := pki.Issue(pki.KubernetesCA("c1"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := Worker{KubernetesVersion: "v1.36.3", Endpoint: "c1-api.elb.example"}.Node(WorkerParams{Zone: "eu-west-1a", Region: "eu-west-1", SecretID: "join", CACertPEM: string(ca.CertPEM), Assets: testAssets()})
	if err != nil {
		t.Fatal(err)
	}
	checkUserDataWithRealTools(t, "worker", n)
}

// With the Addons' CoreDNS and Prometheus, kubeadm skips its CoreDNS and
// the scheduler and controller-manager listen beyond loopback; without
// them, kubeadm's defaults stand.
func TestKubeadmInitFollowsAddons(t *testing.T) {
	for _, addons := range []bool{false, true} {
		c := testControlPlane()
		c.SkipCoreDNS, c.ServeMetrics = addons, addons
		init, err := c.KubeadmInit()
		if err != nil {
			t.Fatal(err)
		}
		skips := strings.Contains(init, "skipPhases:\n  - addon/coredns")
		binds := strings.Count(init, "- name: bind-address\n      value: 0.0.0.0")
		if skips != addons || binds != map[bool]int{false: 0, true: 2}[addons] {
			t.Errorf("addons %v: skips CoreDNS %v, %d components bound to 0.0.0.0:\n%s", addons, skips, binds, init)
		}
	}
}

// Every server kubeadm sets up offers kubeha's strong suites only, from
// TLS 1.2: the API server, controller-manager, scheduler and, through the
// KubeletConfiguration kubeadm stores for every node, each kubelet.
func TestKubeadmServesStrongTLSOnly(t *testing.T) {
	init, err := testControlPlane().KubeadmInit()
	if err != nil {
		t.Fatal(err)
	}
	flag := "- name: tls-cipher-suites\n      value: " + strings.Join(TLSCipherSuites, ",") + "\n    - name: tls-min-version\n      value: VersionTLS12\n"
	if n := strings.Count(init, flag); n != 3 {
		t.Errorf("%d components with the strong suites and TLS 1.2, want 3:\n%s", n, init)
	}
	kubelet := "kind: KubeletConfiguration\ntlsCipherSuites:\n  - " + strings.Join(TLSCipherSuites, "\n  - ") + "\ntlsMinVersion: VersionTLS12\n"
	if !strings.Contains(init, kubelet) {
		t.Errorf("no KubeletConfiguration with the strong suites:\n%s", init)
	}
	for _, suite := range TLSCipherSuites {
		if !strings.Contains(suite, "_GCM_") && !strings.Contains(suite, "CHACHA20") || !strings.HasPrefix(suite, "TLS_ECDHE_") {
			t.Errorf("%s is not an ECDHE AEAD suite", suite)
		}
	}
}

// The add-on applier and the API tunnel are on a node only when asked for,
// and started by its first boot once it serves.
func TestControlPlaneApplierAndTunnelAreOptIn(t *testing.T) {
	on, _ := controlPlaneNode(t, testControlPlane(), "eu-west-1a")
	off := testControlPlane()
	off.ApplyAddons, off.APITunnel = false, false
	plain, _ := controlPlaneNode(t, off, "eu-west-1a")
	env := func(n Node) string { return strings.Join(n.Env, "\n") }
	for _, want := range []string{"TIMERS=kubeha-token-sync.timer,kubeha-csr-approver.timer,kubeha-cert-renewal.timer,kubeha-worker-drain.timer,kubeha-addons.timer", "ADDON_SET_URL=s3://kubeha-prod-assets-0123456789/" + AddonSetKey,
		"APPLIER_NAME=" + AddonsApplierName, "API_TUNNEL_SOCKET=kubeha-api-tunnel.socket", "HELM_ARCHIVE_SHA256=" + PinnedAssets().Helm.SHA256} {
		if !strings.Contains(env(on), want) {
			t.Errorf("with the applier and tunnel, the node's settings lack %q", want)
		}
	}
	for _, path := range []string{"/etc/systemd/system/kubeha-addons.timer", "/etc/systemd/system/kubeha-api-tunnel.socket"} {
		if on.File(path) == nil {
			t.Errorf("with the applier and tunnel, no %s", path)
		}
		if plain.File(path) != nil {
			t.Errorf("without them, still %s", path)
		}
	}
	if !slices.Contains(plain.Env, "TIMERS=kubeha-token-sync.timer,kubeha-csr-approver.timer,kubeha-cert-renewal.timer,kubeha-worker-drain.timer") || strings.Contains(env(plain), "ADDON_SET_URL") || strings.Contains(env(plain), "API_TUNNEL_SOCKET") {
		t.Errorf("without the applier and tunnel, the settings still start them:\n%s", env(plain))
	}
}

// A stopping API server keeps serving, /readyz failing, for as long as
// the load balancer takes to notice, within the 30 s its static pod has
// to stop; with no delay given it stops at once.
func TestAPIServerShutdownDelay(t *testing.T) {
	for delay, want := range map[time.Duration]string{13 * time.Second: "13s", time.Minute: "20s", 0: ""} {
		c := ControlPlane{ClusterName: "kubeha-dev", KubernetesVersion: PinnedKubernetesVersion, Endpoint: "api.example", ShutdownDelay: delay}
		init, err := c.KubeadmInit()
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if _, after, ok := strings.Cut(init, "- name: shutdown-delay-duration\n"); ok {
			got = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(strings.SplitN(after, "\n", 2)[0]), "value:"))
		}
		if got != want {
			t.Errorf("ShutdownDelay %s: shutdown-delay-duration %q, want %q", delay, got, want)
		}
	}
}
