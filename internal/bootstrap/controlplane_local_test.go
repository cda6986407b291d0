package bootstrap_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

// What a control-plane node sees at its real paths, from its own folder.
var controlPlaneBinds = []string{"/etc/kubernetes", "/etc/kubeha", "/var/log/kubernetes", "/usr/local/lib/kubeha", "/usr/local/bin"}

const (
	labEndpoint = "api.kubeha-lab.internal"
	labToken    = "kubeha.labtoken01234567"
	adminDir    = "/etc/kubeha/admin" // on the client host
)

// controlPlaneNode is one control-plane node in the lab and the processes
// kubeadm's manifests describe, by component name.
type controlPlaneNode struct {
	name  string
	host  *netlab.Host
	env   []string // the node's env file, as cloud-init and systemd load it
	procs map[string]*exec.Cmd
}

// run runs a command on the node and fails the test if it fails.
func (n *controlPlaneNode) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := n.host.Command(n.env, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %s %s: %v\n%s", n.name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs a control-plane component with exactly the command line of
// the static pod manifest kubeadm wrote; kill stops it for good.
func (n *controlPlaneNode) start(t *testing.T, component string) {
	t.Helper()
	manifest, err := os.ReadFile(filepath.Join(n.host.Root, "etc/kubernetes/manifests", component+".yaml"))
	must(t, err)
	var pod struct {
		Spec struct {
			Containers []struct{ Command []string }
		}
	}
	must(t, yaml.Unmarshal(manifest, &pod))
	command := pod.Spec.Containers[0].Command
	binary, err := tools.Path(command[0])
	must(t, err)
	// Restarted when it exits, as the kubelet restarts a static pod: a
	// component that loses its Lease under load exits by design.
	supervise := `while :; do "$@"; echo "kubeha-lab: $1 exited ($?); restarting it as the kubelet would" >&2; sleep 1; done`
	cmd := n.host.Command(nil, "/bin/sh", append([]string{"-c", supervise, "sh", binary}, command[1:]...)...)
	log, err := os.Create(filepath.Join(n.host.Root, component+".log"))
	must(t, err)
	cmd.Stdout, cmd.Stderr = log, log
	must(t, n.host.Start(cmd))
	n.procs[component] = cmd
}

func (n *controlPlaneNode) kill(components ...string) {
	for _, c := range components {
		n.host.Stop(n.procs[c])
	}
}

// api calls the API server at ip from the client host with curl; admin
// adds the cluster-admin certificate. It returns the HTTP status and body.
func api(t *testing.T, client *netlab.Host, ip string, admin bool, method, path, body string) (int, string) {
	t.Helper()
	args := []string{"-sk", "--max-time", "5", "-X", method, "-w", "\n%{http_code}", "https://" + ip + ":6443" + path}
	if admin {
		args = append(args, "--cert", adminDir+"/admin.crt", "--key", adminDir+"/admin.key")
	}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/json", "-d", body)
	}
	out, err := client.Command(nil, "curl", args...).CombinedOutput()
	if err != nil {
		return 0, string(out)
	}
	text := strings.TrimRight(string(out), "\n")
	i := strings.LastIndex(text, "\n")
	var code int
	fmt.Sscan(text[i+1:], &code)
	return code, text[:max(i, 0)]
}

// leaseHolder is the holder of a kube-system Lease, read through ip.
func leaseHolder(t *testing.T, client *netlab.Host, ip, name string) (holder string, durationSeconds int, err error) {
	code, body := api(t, client, ip, true, "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+name, "")
	if code != 200 {
		return "", 0, fmt.Errorf("lease %s: HTTP %d %s", name, code, body)
	}
	var lease struct {
		Spec struct {
			HolderIdentity       string `json:"holderIdentity"`
			LeaseDurationSeconds int    `json:"leaseDurationSeconds"`
		}
	}
	if err := json.Unmarshal([]byte(body), &lease); err != nil {
		return "", 0, err
	}
	return lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds, nil
}

// controlPlaneSecret is the cluster secret as the ControlPlane component
// stores it (bootstrap.ControlPlaneSecretFiles), from locally issued keys.
func controlPlaneSecret(t *testing.T, k8sCA, etcdCA *pki.Pair) map[string]string {
	t.Helper()
	frontProxy, err := pki.Issue(pki.FrontProxyCA("kubeha-lab"))
	must(t, err)
	etcdClient, err := etcdCA.Sign(pki.EtcdClient("kube-apiserver-etcd-client"))
	must(t, err)
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	saDER, err := x509.MarshalECPrivateKey(saKey)
	must(t, err)
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	must(t, err)
	secret := map[string]string{
		"pki/ca.crt": string(k8sCA.CertPEM), "pki/ca.key": string(k8sCA.KeyPEM),
		"pki/front-proxy-ca.crt": string(frontProxy.CertPEM), "pki/front-proxy-ca.key": string(frontProxy.KeyPEM),
		"pki/sa.key":      string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER})),
		"pki/sa.pub":      string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub})),
		"pki/etcd/ca.crt": string(etcdCA.CertPEM), "pki/apiserver-etcd-client.crt": string(etcdClient.CertPEM),
		"pki/apiserver-etcd-client.key": string(etcdClient.KeyPEM),
		"bootstrap-token":               labToken,
		"encryption-key":                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
	}
	if len(secret) != len(bootstrap.ControlPlaneSecretFiles) {
		t.Fatalf("the lab secret has %d entries, the component's %d", len(secret), len(bootstrap.ControlPlaneSecretFiles))
	}
	return secret
}

// TestControlPlaneLocal runs the rendered control plane for real: kubeadm
// renders certificates, kubeconfigs and static-pod manifests from kubeha's
// configuration on two nodes (the first by `kubeadm init` phases, the
// second by `kubeadm join` discovery with the token and CA hash), and
// kube-apiserver, kube-controller-manager and kube-scheduler run with
// exactly those manifests' flags against a real 3-member etcd.
func TestControlPlaneLocal(t *testing.T) {
	requireLab(t)
	kubeadm, err := tools.Path("kubeadm")
	if err != nil {
		tools.Unavailable(t, err.Error())
	}
	for _, bin := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if _, err := tools.Path(bin); err != nil {
			tools.Unavailable(t, err.Error())
		}
	}
	l, etcdCA, store := newLabEtcd(t, "kc")
	cluster, zones := l.cluster, labZones
	for i := range l.members {
		l.start(i)
	}
	l.waitFor("etcd healthy", 60*time.Second, func() error { return l.healthy(l.endpoints()) })

	k8sCA, err := pki.Issue(pki.KubernetesCA(cluster.ClusterName))
	must(t, err)
	secret, err := json.Marshal(controlPlaneSecret(t, k8sCA, etcdCA))
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(store, "secrets"), 0o700))
	must(t, os.WriteFile(filepath.Join(store, "secrets", "control-plane.json"), secret, 0o600))
	admin, err := k8sCA.Sign(pki.KubernetesAdmin())
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(l.client.Root, adminDir), 0o700))
	must(t, os.WriteFile(filepath.Join(l.client.Root, adminDir, "admin.crt"), admin.CertPEM, 0o600))
	must(t, os.WriteFile(filepath.Join(l.client.Root, adminDir, "admin.key"), admin.KeyPEM, 0o600))

	rendered := bootstrap.ControlPlane{
		ClusterName: cluster.ClusterName, KubernetesVersion: "v1.36.3", Endpoint: labEndpoint,
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", EtcdEndpoints: strings.Split(cluster.ClientEndpoints(), ","),
		LeaderElection: bootstrap.LeaderElection{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second},
		InitZone:       zones[0],
	}
	hosts := map[string]string{labEndpoint: "10.200.0.21"} // the first node stands in for the load balancer
	for i, m := range cluster.Members {
		hosts[m.DNSName] = fmt.Sprintf("10.200.0.%d", 11+i)
	}
	var nodes []*controlPlaneNode
	for i, name := range []string{"cp-a", "cp-b"} {
		h, err := l.lab.AddHost(name, fmt.Sprintf("10.200.0.%d", 21+i), controlPlaneBinds, hosts)
		must(t, err)
		node, err := rendered.Node(bootstrap.ControlPlaneParams{Zone: zones[i], Region: "eu-west-1", SecretID: "control-plane", CACertPEM: string(k8sCA.CertPEM)})
		must(t, err)
		must(t, node.WriteTo(h.Root))
		writeBinaries(t, h.Root, store)
		must(t, os.Symlink(kubeadm, filepath.Join(h.Root, "usr/local/bin/kubeadm")))
		n := &controlPlaneNode{name: name, host: h, env: node.Env, procs: map[string]*exec.Cmd{}}
		// The boot script's own steps: fetch the secret, fill the templates.
		n.run(t, "bash", "-c", ". "+bootstrap.ScriptDir+"/node-common.sh && fetch_secrets")
		n.run(t, bootstrap.ScriptDir+"/node-configure.sh")
		nodes = append(nodes, n)
	}
	cpA, cpB := nodes[0], nodes[1]
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			for component := range n.procs {
				logData, _ := os.ReadFile(filepath.Join(n.host.Root, component+".log"))
				t.Logf("%s %s log tail:\n%s", n.name, component, tail(string(logData), 12))
			}
		}
	})

	// Node a: what `kubeadm init` does before it starts the kubelet.
	initConfig := "--config=" + bootstrap.KubeadmInitConfigPath
	for _, phase := range []string{"certs", "kubeconfig", "control-plane"} {
		cpA.run(t, kubeadm, "init", "phase", phase, "all", initConfig)
	}
	cpA.start(t, "kube-apiserver")
	started := time.Now()
	l.waitFor("cp-a /readyz", 90*time.Second, func() error {
		if code, body := api(t, l.client, cpA.host.IP, false, "GET", "/readyz", ""); code != 200 {
			return fmt.Errorf("HTTP %d %s", code, body)
		}
		return nil
	})
	t.Logf("MEASURED: kube-apiserver on cp-a ready (anonymous GET /readyz = 200) %s after start", time.Since(started).Round(time.Millisecond))
	// What `kubeadm init` does once the API answers: RBAC for
	// kubeadm:cluster-admins, the kubeadm-config, the join token.
	cpA.run(t, kubeadm, "init", "phase", "upload-config", "all", initConfig)
	cpA.run(t, kubeadm, "init", "phase", "bootstrap-token", initConfig)
	cpA.start(t, "kube-controller-manager")
	cpA.start(t, "kube-scheduler")

	// Anonymous requests reach health endpoints only.
	if code, body := api(t, l.client, cpA.host.IP, false, "GET", "/api", ""); code != 401 {
		t.Errorf("anonymous GET /api = HTTP %d %s, want 401", code, body)
	}
	if code, body := api(t, l.client, cpA.host.IP, false, "GET", "/api/v1/namespaces/kube-public/configmaps", ""); code != 401 {
		t.Errorf("anonymous list of kube-public ConfigMaps = HTTP %d %s, want 401: only cluster-info is public", code, body)
	}
	if code, body := api(t, l.client, cpA.host.IP, true, "GET", "/api/v1/namespaces/kube-system", ""); code != 200 {
		t.Errorf("the admin kubeconfig's identity (O=kubeadm:cluster-admins) got HTTP %d %s, want 200", code, body)
	}

	// Secrets are encrypted in etcd with the key from the secret.
	if code, body := api(t, l.client, cpA.host.IP, true, "POST", "/api/v1/namespaces/default/secrets",
		`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"kubeha-probe"},"stringData":{"password":"hunter2"}}`); code != 201 {
		t.Fatalf("creating a Secret: HTTP %d %s", code, body)
	}
	raw, err := l.ctl(l.endpoints(), "get", "/registry/secrets/default/kubeha-probe", "--print-value-only")
	must(t, err)
	if !strings.HasPrefix(raw, "k8s:enc:secretbox:v1:key1:") || strings.Contains(raw, "hunter2") {
		t.Errorf("the Secret in etcd starts %q: not secretbox-encrypted", raw[:min(len(raw), 40)])
	}
	audit, err := os.ReadFile(filepath.Join(cpA.host.Root, "var/log/kubernetes/audit/audit.log"))
	must(t, err)
	if !strings.Contains(string(audit), `"name":"kubeha-probe"`) && !strings.Contains(string(audit), "kubeha-probe") {
		t.Error("the audit log has no record of the Secret's creation")
	}
	if strings.Contains(string(audit), "hunter2") {
		t.Error("the audit log holds a Secret's payload")
	}

	// The join token works and rotates: the sync script, run as the timer
	// would, keeps the secret's token and nothing else of kubeha's.
	cpA.run(t, bootstrap.ScriptDir+"/control-plane-token-sync.sh")
	tokens := cpA.run(t, kubeadm, "token", "list", "--kubeconfig=/etc/kubernetes/admin.conf")
	if !strings.Contains(tokens, labToken) || !strings.Contains(tokens, "<forever>") {
		t.Errorf("kubeadm token list lacks the never-expiring kubeha token:\n%s", tokens)
	}

	// Node b joins the way a later node does: discovery through the
	// endpoint with the token and the pinned CA hash, then kubeadm renders
	// its certificates, kubeconfigs and manifests from the cluster's
	// kubeadm-config.
	// kube-controller-manager's bootstrapsigner signs cluster-info with
	// the token; discovery trusts nothing unsigned.
	tokenID := strings.SplitN(labToken, ".", 2)[0]
	l.waitFor("cluster-info signed for the join token", 60*time.Second, func() error {
		code, body := api(t, l.client, cpA.host.IP, false, "GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", "")
		if code != 200 || !strings.Contains(body, "jws-kubeconfig-"+tokenID) {
			return fmt.Errorf("anonymous GET cluster-info: HTTP %d, no jws-kubeconfig-%s", code, tokenID)
		}
		return nil
	})
	cpB.run(t, kubeadm, "join", "phase", "control-plane-prepare", "all", "--config="+bootstrap.KubeadmJoinConfigPath)
	cpB.start(t, "kube-apiserver")
	l.waitFor("cp-b /readyz", 90*time.Second, func() error {
		if code, body := api(t, l.client, cpB.host.IP, false, "GET", "/readyz", ""); code != 200 {
			return fmt.Errorf("HTTP %d %s", code, body)
		}
		return nil
	})
	// cp-b's scheduler and controller-manager talk to cp-b's own API server.
	for _, conf := range []string{"scheduler.conf", "controller-manager.conf"} {
		data, err := os.ReadFile(filepath.Join(cpB.host.Root, "etc/kubernetes", conf))
		must(t, err)
		if !strings.Contains(string(data), "server: https://"+cpB.host.IP+":6443") {
			t.Errorf("cp-b %s does not use the local API server:\n%s", conf, data)
		}
	}

	// Exactly one of each component holds its Lease: cp-a's, which started
	// first. Then cp-b's start and wait.
	holders := map[string]string{}
	for _, lease := range []string{"kube-scheduler", "kube-controller-manager"} {
		l.waitFor(lease+" Lease held", 60*time.Second, func() error {
			holder, duration, err := leaseHolder(t, l.client, cpA.host.IP, lease)
			if err == nil && (holder == "" || duration != 15) {
				err = fmt.Errorf("holder %q, lease duration %ds, want a holder and 15s", holder, duration)
			}
			holders[lease] = holder
			return err
		})
	}
	cpB.start(t, "kube-controller-manager")
	cpB.start(t, "kube-scheduler")
	time.Sleep(5 * time.Second) // both candidates of each are now running
	for lease, holder := range holders {
		now, _, err := leaseHolder(t, l.client, cpB.host.IP, lease)
		must(t, err)
		if now != holder {
			t.Errorf("%s Lease moved from %s to %s while its holder was alive", lease, holder, now)
		}
	}

	// Kill node a's components, as if the node died: each Lease moves to
	// node b once it expires.
	cpA.kill("kube-scheduler", "kube-controller-manager", "kube-apiserver")
	killed := time.Now()
	movedAfter := map[string]time.Duration{}
	l.waitFor("both Leases taken over", 60*time.Second, func() error {
		for lease, old := range holders {
			if _, done := movedAfter[lease]; done {
				continue
			}
			if holder, _, err := leaseHolder(t, l.client, cpB.host.IP, lease); err == nil && holder != "" && holder != old {
				movedAfter[lease] = time.Since(killed)
			}
		}
		if len(movedAfter) < len(holders) {
			return fmt.Errorf("moved so far: %v", movedAfter)
		}
		return nil
	})
	for lease, took := range movedAfter {
		t.Logf("MEASURED: %s Lease taken over by cp-b %s after its holder died (configured lease duration 15s, retry period 2s)",
			lease, took.Round(100*time.Millisecond))
	}
}
