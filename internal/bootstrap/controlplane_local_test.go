package bootstrap_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/pki"
)

const (
	labEndpoint = "api.kubeha-lab.internal"
	labToken    = "kubeha.labtoken01234567"
)

// TestControlPlaneLocal runs the rendered control plane for real: kubeadm
// renders certificates, kubeconfigs and static-pod manifests from kubeha's
// configuration on two nodes (the first by `kubeadm init` phases, the
// second by `kubeadm join` discovery with the token and CA hash), and
// kube-apiserver, kube-controller-manager and kube-scheduler run with
// exactly those manifests' flags against a real 3-member etcd. The test
// talks to the API servers from the lab's client host.
func TestControlPlaneLocal(t *testing.T) {
	requireLab(t, lab.Binaries...)
	l, etcdCA, store := newLabEtcd(t, "kc")
	cluster, zones := l.cluster, labZones
	for i := range l.members {
		l.start(i)
	}
	l.waitFor("etcd healthy", time.Minute, func() error { return l.healthy(l.endpoints()) })

	k8sCA, err := pki.Issue(pki.KubernetesCA(cluster.ClusterName))
	must(t, err)
	secret, err := lab.ControlPlaneSecret(cluster.ClusterName, k8sCA, etcdCA, labToken)
	must(t, err)
	must(t, lab.WriteSecret(store, "control-plane", secret))
	admin, err := k8sCA.Sign(pki.KubernetesAdmin())
	must(t, err)

	le := bootstrap.LeaderElectionSeconds(15, 10, 2)
	rendered := bootstrap.ControlPlane{
		ClusterName: cluster.ClusterName, KubernetesVersion: "v1.36.3", Endpoint: labEndpoint,
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", EtcdEndpoints: strings.Split(cluster.ClientEndpoints(), ","),
		LeaderElection: le, InitZone: zones[0],
	}
	hosts := map[string]string{labEndpoint: "10.200.0.21"} // the first node stands in for the load balancer
	for i, m := range cluster.Members {
		hosts[m.DNSName] = fmt.Sprintf("10.200.0.%d", 11+i)
	}
	var nodes []*lab.Node
	for i, name := range []string{"cp-a", "cp-b"} {
		n, err := lab.AddControlPlaneNode(l.net, netlab.FlatNetwork, name, fmt.Sprintf("10.200.0.%d", 21+i), hosts, rendered,
			bootstrap.ControlPlaneParams{Zone: zones[i], Region: "eu-west-1", SecretID: "control-plane", CACertPEM: string(k8sCA.CertPEM), Assets: lab.UnusedAssets()}, store)
		must(t, err)
		nodes = append(nodes, n)
	}
	cpA, cpB := nodes[0], nodes[1]
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				for _, component := range lab.ControlPlaneComponents {
					t.Logf("%s %s log tail:\n%s", n.Name, component, n.LogTail(component, 12))
				}
			}
		}
	})
	// Clients of one node's API server, from the client host.
	api := func(n *lab.Node, user *pki.Pair) *lab.API {
		a, err := lab.NewAPI(n.Host.IP, labEndpoint, k8sCA, user, l.client.DialContext, 5*time.Second)
		must(t, err)
		return a
	}
	anonymousA, adminA, adminB := api(cpA, nil), api(cpA, admin), api(cpB, admin)
	status := func(a *lab.API, method, path string, body any) (int, string) {
		code, text, err := a.Do(method, path, body)
		if err != nil {
			return 0, err.Error()
		}
		return code, text
	}

	// Node a: what `kubeadm init` does before it starts the kubelet.
	must(t, cpA.KubeadmInit(lab.KubeadmInitBeforeAPI))
	must(t, cpA.StartStaticPod("kube-apiserver"))
	ready := l.waitFor("cp-a "+bootstrap.HealthCheckPath, 90*time.Second, anonymousA.Ready)
	t.Logf("MEASURED: kube-apiserver on cp-a ready (anonymous GET %s = 200) %s after start", bootstrap.HealthCheckPath, ready.Round(time.Millisecond))
	// What `kubeadm init` does once the API answers: RBAC for
	// kubeadm:cluster-admins, the kubeadm-config, the join token.
	must(t, cpA.KubeadmInit(lab.KubeadmInitAfterAPI))
	must(t, cpA.StartStaticPod("kube-controller-manager"))
	must(t, cpA.StartStaticPod("kube-scheduler"))

	// Anonymous requests reach health endpoints only.
	if code, body := status(anonymousA, "GET", "/api", nil); code != http.StatusUnauthorized {
		t.Errorf("anonymous GET /api = HTTP %d %s, want 401", code, body)
	}
	if code, body := status(anonymousA, "GET", "/api/v1/namespaces/kube-public/configmaps", nil); code != http.StatusUnauthorized {
		t.Errorf("anonymous list of kube-public ConfigMaps = HTTP %d %s, want 401: only cluster-info is public", code, body)
	}
	if code, body := status(adminA, "GET", "/api/v1/namespaces/kube-system", nil); code != http.StatusOK {
		t.Errorf("the admin kubeconfig's identity (O=kubeadm:cluster-admins) got HTTP %d %s, want 200", code, body)
	}

	// Secrets are encrypted in etcd with the key from the secret.
	if code, body := status(adminA, "POST", "/api/v1/namespaces/default/secrets",
		map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]string{"name": "kubeha-probe"},
			"stringData": map[string]string{"password": "hunter2"}}); code != http.StatusCreated {
		t.Fatalf("creating a Secret: HTTP %d %s", code, body)
	}
	raw, err := l.ctl(l.endpoints(), "get", "/registry/secrets/default/kubeha-probe", "--print-value-only")
	must(t, err)
	if !strings.HasPrefix(raw, "k8s:enc:secretbox:v1:key1:") || strings.Contains(raw, "hunter2") {
		t.Errorf("the Secret in etcd starts %q: not secretbox-encrypted", raw[:min(len(raw), 40)])
	}
	audit, err := os.ReadFile(filepath.Join(cpA.Host.Root, bootstrap.AuditLogPath))
	must(t, err)
	if !strings.Contains(string(audit), "kubeha-probe") {
		t.Error("the audit log has no record of the Secret's creation")
	}
	if strings.Contains(string(audit), "hunter2") {
		t.Error("the audit log holds a Secret's payload")
	}

	// The join token works and rotates: the sync script, run as the timer
	// would, keeps the secret's token and nothing else of kubeha's.
	_, err = cpA.Script("control-plane-token-sync.sh")
	must(t, err)
	tokens, err := cpA.Run("kubeadm", "token", "list", "--kubeconfig="+bootstrap.AdminKubeconfigPath)
	must(t, err)
	if !strings.Contains(tokens, labToken) || !strings.Contains(tokens, "<forever>") {
		t.Errorf("kubeadm token list lacks the never-expiring kubeha token:\n%s", tokens)
	}

	// Node b joins the way a later node does: discovery through the
	// endpoint with the token and the pinned CA hash, then kubeadm renders
	// its certificates, kubeconfigs and manifests from the cluster's
	// kubeadm-config.
	// kube-controller-manager's bootstrapsigner signs cluster-info with
	// the token; discovery trusts nothing unsigned.
	tokenID, _, _ := strings.Cut(labToken, ".")
	l.waitFor("cluster-info signed for the join token", time.Minute, func() error {
		code, body := status(anonymousA, "GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", nil)
		if code != http.StatusOK || !strings.Contains(body, "jws-kubeconfig-"+tokenID) {
			return fmt.Errorf("anonymous GET cluster-info: HTTP %d, no jws-kubeconfig-%s", code, tokenID)
		}
		return nil
	})
	must(t, cpB.KubeadmJoinPrepare())
	must(t, cpB.StartStaticPod("kube-apiserver"))
	l.waitFor("cp-b "+bootstrap.HealthCheckPath, 90*time.Second, api(cpB, nil).Ready)
	// cp-b's scheduler and controller-manager talk to cp-b's own API server.
	for _, conf := range []string{"scheduler.conf", "controller-manager.conf"} {
		data, err := os.ReadFile(filepath.Join(cpB.Host.Root, filepath.Dir(bootstrap.AdminKubeconfigPath), conf))
		must(t, err)
		if want := fmt.Sprintf("server: https://%s:%d", cpB.Host.IP, bootstrap.APIServerPort); !strings.Contains(string(data), want) {
			t.Errorf("cp-b %s does not use the local API server (%s):\n%s", conf, want, data)
		}
	}

	// Exactly one of each component holds its Lease: cp-a's, which started
	// first. Then cp-b's start and try.
	holders := map[string]string{}
	for _, name := range lab.LeaderElected {
		l.waitFor(name+" Lease held", time.Minute, func() error {
			lease, err := adminA.Lease(name)
			if err == nil && (lease.Holder != cpA.Name || lease.DurationSeconds != int(le.LeaseDuration.Seconds())) {
				err = fmt.Errorf("holder %q, lease duration %ds, want %s and %s", lease.Identity, lease.DurationSeconds, cpA.Name, le.LeaseDuration)
			}
			holders[name] = lease.Identity
			return err
		})
	}
	must(t, cpB.StartStaticPod("kube-controller-manager"))
	must(t, cpB.StartStaticPod("kube-scheduler"))
	for _, name := range lab.LeaderElected {
		l.waitFor("cp-b's "+name+" trying for the Lease", time.Minute, func() error {
			// client-go's leader election says so before its first try.
			if !strings.Contains(cpB.LogTail(name, 200), "Attempting to acquire leader lease") {
				return fmt.Errorf("not yet")
			}
			return nil
		})
	}
	// Each candidate retries at least once more meanwhile.
	time.Sleep(time.Duration(float64(le.RetryPeriod) * (1 + bootstrap.LeaderElectionJitter)))
	for name, holder := range holders {
		lease, err := adminB.Lease(name)
		must(t, err)
		if lease.Identity != holder {
			t.Errorf("%s Lease moved from %s to %s while its holder was alive", name, holder, lease.Identity)
		}
	}

	// Kill node a's components, as if the node died: each Lease moves to
	// node b once it expires, within what the Lease timing allows.
	cpA.Stop(lab.ControlPlaneComponents...)
	killed := time.Now()
	movedAfter := map[string]time.Duration{}
	l.waitFor("both Leases taken over", time.Minute, func() error {
		for _, name := range lab.LeaderElected {
			if _, done := movedAfter[name]; done {
				continue
			}
			if lease, err := adminB.Lease(name); err == nil && lease.Holder == cpB.Name {
				movedAfter[name] = time.Since(killed)
			}
		}
		if len(movedAfter) < len(lab.LeaderElected) {
			return fmt.Errorf("moved so far: %v", movedAfter)
		}
		return nil
	})
	for _, name := range lab.LeaderElected {
		lab.Within(t, fmt.Sprintf("%s Lease taken over by cp-b after its holder died (lease %s, retry %s)", name, le.LeaseDuration, le.RetryPeriod),
			movedAfter[name], lab.LeaseTakeover(le))
	}
}
