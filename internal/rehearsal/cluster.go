// Package rehearsal runs the cluster a stack renders, for real, on one
// Linux machine: each zone is a routed network with one etcd member and one
// control-plane node, each node its own network namespace; haproxy, set up
// from the stack's load balancer health check, stands in for the NLB. Then
// it drills the failures kubeha claims to survive and measures them.
package rehearsal

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

// Addresses: zone i is 10.210.(i+1).0/24 with etcd at .11 and the control
// plane at .21; the load balancer has its own network; the machine reaches
// all of them through the hub, the lab's router.
const (
	labPrefix = "rh"
	labCIDR   = "10.210.0.0/16"
	lbIP      = "10.210.100.10"
	lbStats   = 8404
	machineIP = "10.210.254.2"
	hubIP     = "10.210.254.1"
	// joinToken is the rehearsal's bootstrap token.
	joinToken = "kubeha.rehearsal0123456"
)

var (
	etcdBinds         = []string{"/etc/etcd", "/etc/kubeha", "/var/lib/etcd", "/usr/local/lib/kubeha", "/usr/local/bin", "/run/kubeha"}
	controlPlaneBinds = []string{"/etc/kubernetes", "/etc/kubeha", "/var/log/kubernetes", "/usr/local/lib/kubeha", "/usr/local/bin"}
	lbBinds           = []string{"/etc/haproxy"}
	// Binaries the rehearsal runs, built by hack/tools.sh.
	binaries = []string{"etcd", "etcdctl", "etcdutl", "kubeadm", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
)

func zoneNet(i int) string { return fmt.Sprintf("10.210.%d", i+1) }

// cluster is the running rehearsal.
type cluster struct {
	// ctx ends every wait when the rehearsal is interrupted.
	ctx      context.Context
	cfg      config.Stack
	lab      *netlab.Lab
	endpoint string // the API's name, which resolves to the load balancer
	etcd     bootstrap.EtcdCluster
	members  []*member
	nodes    []*node
	lb       *netlab.Host
	haproxy  *exec.Cmd
	check    string // healthCheckReadyz or healthCheckTCP
	k8sCA    *pki.Pair
	etcdCA   *pki.Pair
	admin    *pki.Pair
	logf     func(format string, args ...any)

	etcdProbeOnce sync.Once
	etcdProbe     tls.Certificate
}

type member struct {
	spec bootstrap.EtcdMember
	host *netlab.Host
	env  []string // the member's env file, as systemd loads it
	proc *exec.Cmd
}

type node struct {
	name  string
	zone  string
	host  *netlab.Host
	env   []string // the node's env file, as cloud-init and systemd load it
	procs map[string]*exec.Cmd
}

// components are what a control-plane node runs, in start order.
var components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// binPaths finds every binary, or says how to build them.
func binPaths() (map[string]string, error) {
	paths := map[string]string{}
	for _, b := range binaries {
		p, err := tools.Path(b)
		if err != nil {
			return nil, err
		}
		paths[b] = p
	}
	return paths, nil
}

// setUp builds the topology and starts etcd, the control plane and
// haproxy, all from the stack's rendered configuration.
func setUp(ctx context.Context, cfg config.Stack, dir string, bins map[string]string, logf func(string, ...any)) (_ *cluster, err error) {
	lab, err := netlab.New(labPrefix, dir)
	if err != nil {
		return nil, err
	}
	c := &cluster{ctx: ctx, cfg: cfg, lab: lab, endpoint: "api." + cfg.ClusterName + ".rehearsal", check: healthCheckReadyz, logf: logf}
	// Nothing half-made stays behind.
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	zones := cfg.Zones[:3]
	for i := range zones {
		if err := lab.AddNetwork(fmt.Sprintf("zone%d", i), zoneNet(i)+".1"); err != nil {
			return nil, err
		}
	}
	if err := lab.AddNetwork("lbnet", "10.210.100.1"); err != nil {
		return nil, err
	}
	if err := lab.ConnectMachine(machineIP, hubIP, labCIDR); err != nil {
		return nil, err
	}

	if c.etcdCA, err = pki.Issue(pki.EtcdCA(cfg.ClusterName)); err != nil {
		return nil, err
	}
	if c.k8sCA, err = pki.Issue(pki.KubernetesCA(cfg.ClusterName)); err != nil {
		return nil, err
	}
	if c.admin, err = c.k8sCA.Sign(pki.KubernetesAdmin()); err != nil {
		return nil, err
	}
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(filepath.Join(store, "secrets"), 0o700); err != nil {
		return nil, err
	}
	secret, err := c.controlPlaneSecret()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(store, "secrets", "control-plane.json"), secret, 0o600); err != nil {
		return nil, err
	}

	// One member per zone: the rehearsal drills a 3-zone, 3-member cluster.
	c.etcd = bootstrap.NewEtcdCluster(cfg.ClusterName, zones, 3, cfg.Etcd.VolumeSizeGiB, cfg.Etcd.BackupIntervalMinutes)
	hosts := map[string]string{c.endpoint: lbIP}
	for i, m := range c.etcd.Members {
		hosts[m.DNSName] = zoneNet(i) + ".11"
	}
	for i, m := range c.etcd.Members {
		h, err := lab.AddHostOn(fmt.Sprintf("zone%d", i), m.Name, hosts[m.DNSName], etcdBinds, hosts)
		if err != nil {
			return nil, err
		}
		n, err := c.etcd.Node(bootstrap.EtcdNodeParams{Member: m, Region: cfg.Region, VolumeID: "vol-rehearsal",
			HostedZoneID: "ZREHEARSAL", SecretID: "etcd", BackupBucket: "rehearsal", KMSKeyID: "rehearsal"})
		if err != nil {
			return nil, err
		}
		if err := n.WriteTo(h.Root); err != nil {
			return nil, err
		}
		if err := c.writeCerts(h.Root, map[string]pki.Spec{"server": pki.EtcdServer(m.DNSName), "peer": pki.EtcdPeer(m.DNSName)}); err != nil {
			return nil, err
		}
		if err := writeBinaries(h.Root, store, bins); err != nil {
			return nil, err
		}
		c.members = append(c.members, &member{spec: m, host: h, env: n.Env})
	}
	for i := range c.members {
		if err := c.startEtcd(i); err != nil {
			return nil, err
		}
	}
	if _, err := c.waitFor("etcd healthy", 90*time.Second, c.etcdHealthy); err != nil {
		return nil, err
	}

	// haproxy before the control plane: later nodes discover the cluster
	// through the endpoint, as on AWS.
	if c.lb, err = lab.AddHostOn("lbnet", "lb", lbIP, lbBinds, hosts); err != nil {
		return nil, err
	}
	if err := c.startHAProxy(); err != nil {
		return nil, err
	}
	le := cfg.ControlPlane.LeaderElection
	rendered := bootstrap.ControlPlane{
		ClusterName: cfg.ClusterName, KubernetesVersion: cfg.KubernetesVersion, Endpoint: c.endpoint,
		PodCIDR: cfg.Network.PodCidr, ServiceCIDR: cfg.Network.ServiceCidr, EtcdEndpoints: strings.Split(c.etcd.ClientEndpoints(), ","),
		LeaderElection: bootstrap.LeaderElectionSeconds(le.LeaseDurationSeconds, le.RenewDeadlineSeconds, le.RetryPeriodSeconds),
		InitZone:       zones[0],
	}
	for i, zone := range zones {
		name := "cp-" + string(rune('a'+i))
		h, err := lab.AddHostOn(fmt.Sprintf("zone%d", i), name, zoneNet(i)+".21", controlPlaneBinds, hosts)
		if err != nil {
			return nil, err
		}
		n, err := rendered.Node(bootstrap.ControlPlaneParams{Zone: zone, Region: cfg.Region, SecretID: "control-plane", CACertPEM: string(c.k8sCA.CertPEM)})
		if err != nil {
			return nil, err
		}
		if err := n.WriteTo(h.Root); err != nil {
			return nil, err
		}
		if err := writeBinaries(h.Root, store, bins); err != nil {
			return nil, err
		}
		nd := &node{name: name, zone: zone, host: h, env: n.Env, procs: map[string]*exec.Cmd{}}
		// The boot script's own steps: fetch the secret, fill the templates.
		if err := nd.run("bash", "-c", ". "+bootstrap.ScriptDir+"/node-common.sh && fetch_secrets"); err != nil {
			return nil, err
		}
		if err := nd.run(bootstrap.ScriptDir + "/node-configure.sh"); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, nd)
	}
	if err := c.initFirstNode(bins["kubeadm"]); err != nil {
		return nil, err
	}
	for _, n := range c.nodes[1:] {
		// What `kubeadm join --control-plane` renders, discovering the
		// cluster through the load balancer with the token and CA hash.
		if err := n.run(bins["kubeadm"], "join", "phase", "control-plane-prepare", "all", "--config="+bootstrap.KubeadmJoinConfigPath); err != nil {
			return nil, err
		}
		for _, comp := range components {
			if err := n.start(comp); err != nil {
				return nil, err
			}
		}
	}
	if _, err := c.waitFor("every node in rotation", 180*time.Second, c.fullyHealthy); err != nil {
		return nil, err
	}
	return c, nil
}

// initFirstNode does what `kubeadm init` does on the first node before and
// after its API server answers.
func (c *cluster) initFirstNode(kubeadm string) error {
	a, initConfig := c.nodes[0], "--config="+bootstrap.KubeadmInitConfigPath
	for _, phase := range []string{"certs", "kubeconfig", "control-plane"} {
		if err := a.run(kubeadm, "init", "phase", phase, "all", initConfig); err != nil {
			return err
		}
	}
	if err := a.start("kube-apiserver"); err != nil {
		return err
	}
	if _, err := c.waitFor("cp-a /readyz through the load balancer", 120*time.Second, func() error {
		return c.readyz(lbIP)
	}); err != nil {
		return err
	}
	for _, phase := range [][]string{{"upload-config", "all"}, {"bootstrap-token"}} {
		if err := a.run(kubeadm, append(append([]string{"init", "phase"}, phase...), initConfig)...); err != nil {
			return err
		}
	}
	for _, comp := range components[1:] {
		if err := a.start(comp); err != nil {
			return err
		}
	}
	// kube-controller-manager signs cluster-info with the token; joining
	// nodes trust nothing unsigned.
	tokenID := strings.SplitN(joinToken, ".", 2)[0]
	_, err := c.waitFor("cluster-info signed", 120*time.Second, func() error {
		code, body, err := c.api("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", nil)
		if err != nil || code != 200 || !strings.Contains(body, "jws-kubeconfig-"+tokenID) {
			return fmt.Errorf("HTTP %d, err %v", code, err)
		}
		return nil
	})
	return err
}

// controlPlaneSecret is the secret the ControlPlane component stores, from
// locally issued keys.
func (c *cluster) controlPlaneSecret() ([]byte, error) {
	frontProxy, err := pki.Issue(pki.FrontProxyCA(c.cfg.ClusterName))
	if err != nil {
		return nil, err
	}
	etcdClient, err := c.etcdCA.Sign(pki.EtcdClient("kube-apiserver-etcd-client"))
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saDER, _ := x509.MarshalECPrivateKey(saKey)
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	secret := map[string]string{
		"pki/ca.crt": string(c.k8sCA.CertPEM), "pki/ca.key": string(c.k8sCA.KeyPEM),
		"pki/front-proxy-ca.crt": string(frontProxy.CertPEM), "pki/front-proxy-ca.key": string(frontProxy.KeyPEM),
		"pki/sa.key":      string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER})),
		"pki/sa.pub":      string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub})),
		"pki/etcd/ca.crt": string(c.etcdCA.CertPEM), "pki/apiserver-etcd-client.crt": string(etcdClient.CertPEM),
		"pki/apiserver-etcd-client.key": string(etcdClient.KeyPEM),
		"bootstrap-token":               joinToken,
		"encryption-key":                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
	}
	if len(secret) != len(bootstrap.ControlPlaneSecretFiles) {
		return nil, fmt.Errorf("rehearsal: the secret has %d entries, the component's %d", len(secret), len(bootstrap.ControlPlaneSecretFiles))
	}
	return json.Marshal(secret)
}

func (c *cluster) writeCerts(root string, specs map[string]pki.Spec) error {
	dir := filepath.Join(root, bootstrap.EtcdPKIDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), c.etcdCA.CertPEM, 0o644); err != nil {
		return err
	}
	for name, spec := range specs {
		pair, err := c.etcdCA.Sign(spec)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".crt"), pair.CertPEM, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".key"), pair.KeyPEM, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func writeBinaries(root, store string, bins map[string]string) error {
	bin := filepath.Join(root, "usr/local/bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	for name, path := range bins {
		if err := os.Symlink(path, filepath.Join(bin, name)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(bin, "aws"), []byte(netlab.AWSShim(store)), 0o755)
}

func (c *cluster) startEtcd(i int) error {
	m := c.members[i]
	m.proc = m.host.Command(m.env, bootstrap.ScriptDir+"/etcd-start.sh")
	log, err := os.OpenFile(filepath.Join(m.host.Root, "etcd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	m.proc.Stdout, m.proc.Stderr = log, log
	return m.host.Start(m.proc)
}

func (n *node) run(name string, args ...string) error {
	out, err := n.host.Command(n.env, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %s %s: %v\n%s", n.name, name, strings.Join(args, " "), err, out)
	}
	return nil
}

// start runs a component with exactly the command line of the static pod
// manifest kubeadm wrote, restarted when it exits, as the kubelet would.
func (n *node) start(component string) error {
	manifest, err := os.ReadFile(filepath.Join(n.host.Root, "etc/kubernetes/manifests", component+".yaml"))
	if err != nil {
		return err
	}
	var pod struct {
		Spec struct{ Containers []struct{ Command []string } }
	}
	if err := yaml.Unmarshal(manifest, &pod); err != nil {
		return err
	}
	command := pod.Spec.Containers[0].Command
	binary, err := tools.Path(command[0])
	if err != nil {
		return err
	}
	// Its own hostname, as on its own machine: Lease holders are named
	// <hostname>_<id>.
	supervise := `hostname "$0" && while :; do "$@"; echo "rehearsal: $1 exited ($?); restarting it as the kubelet would" >&2; sleep 1; done`
	cmd := n.host.Command(nil, "unshare", append([]string{"--uts", "/bin/sh", "-c", supervise, n.name, binary}, command[1:]...)...)
	log, err := os.OpenFile(filepath.Join(n.host.Root, component+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := n.host.Start(cmd); err != nil {
		return err
	}
	n.procs[component] = cmd
	return nil
}

// stop kills the node's components for good.
func (n *node) stop() {
	for _, comp := range components {
		n.host.Stop(n.procs[comp])
		delete(n.procs, comp)
	}
}

func (c *cluster) close() {
	if c.lab == nil {
		return
	}
	if err := c.lab.Close(); err != nil {
		c.logf("cleanup: %v", err)
	}
	c.lab = nil
}
