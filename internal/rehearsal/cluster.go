// Package rehearsal runs the cluster a stack renders, for real, on one
// Linux machine: each zone is a routed network with one etcd member and one
// control-plane node, each node its own network namespace; haproxy, set up
// from the stack's load balancer health check, stands in for the NLB. Then
// it drills the failures kubeha claims to survive and measures them.
package rehearsal

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/pki"
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
	// awsIP answers every AWS endpoint and the VPC's DNS.
	awsIP = "10.210.200.2"
	// joinToken is the rehearsal's bootstrap token.
	joinToken = "kubeha.rehearsal0123456"
)

func zoneNet(i int) string { return fmt.Sprintf("10.210.%d", i+1) }

// cluster is the running rehearsal.
type cluster struct {
	// ctx ends every wait when the rehearsal is interrupted.
	ctx      context.Context
	stack    stack
	net      *netlab.Lab
	endpoint string // the API's name, which resolves to the load balancer
	cloud    *lab.Cloud
	// members are the etcd members' auto-scaling groups of one.
	members  []*lab.NodeGroup
	etcdBoot time.Duration
	nodes    []*lab.Node
	lb       *lab.Node
	check    string // healthCheckReadyz or healthCheckTCP
	k8sCA    *pki.Pair
	etcdCA   *pki.Pair
	// lbAdmin is cluster-admin through the load balancer, as kubectl with
	// the stack's kubeconfig; nodeAPIs ask each node directly, anonymously,
	// as the load balancer's check does.
	admin    *pki.Pair
	lbAdmin  *lab.API
	nodeAPIs []*lab.API
	// nodeAdmins are cluster-admin on each node, asked directly.
	nodeAdmins []*lab.API
	// etcdMetrics read each member's TLS metrics port, as Prometheus does.
	etcdMetrics []*http.Client
	logf        func(format string, args ...any)
}

// setUp builds the topology and starts etcd, the control plane and
// haproxy, all from the stack's rendered configuration.
func setUp(ctx context.Context, s stack, dir string, logf func(string, ...any)) (_ *cluster, err error) {
	nl, err := netlab.New(labPrefix, dir)
	if err != nil {
		return nil, err
	}
	c := &cluster{ctx: ctx, stack: s, net: nl, endpoint: "api." + s.clusterName + ".rehearsal", check: healthCheckReadyz, logf: logf}
	// Nothing half-made stays behind.
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	for i := range s.zones {
		if err := nl.AddNetwork(zoneNetwork(i), zoneNet(i)+".1"); err != nil {
			return nil, err
		}
	}
	if err := nl.AddNetwork("lbnet", "10.210.100.1"); err != nil {
		return nil, err
	}
	if err := nl.ConnectMachine(machineIP, hubIP, labCIDR); err != nil {
		return nil, err
	}

	if c.etcdCA, err = declaredCA(s.declared, s.clusterName+"-etcd-ca"); err != nil {
		return nil, err
	}
	if c.k8sCA, err = pki.Issue(pki.KubernetesCA(s.clusterName)); err != nil {
		return nil, err
	}
	if err := c.makeClients(); err != nil {
		return nil, err
	}
	store := dir + "/store"
	secret, err := lab.ControlPlaneSecret(s.clusterName, c.k8sCA, c.etcdCA, joinToken)
	if err != nil {
		return nil, err
	}
	if err := lab.WriteSecret(store, "control-plane", secret); err != nil {
		return nil, err
	}

	hosts := map[string]string{c.endpoint: lbIP}
	for i, m := range s.etcd.Members {
		hosts[m.DNSName] = zoneNet(i) + ".11"
	}
	if err := c.bootEtcd(dir); err != nil {
		return nil, err
	}

	// haproxy before the control plane: later nodes discover the cluster
	// through the endpoint, as on AWS.
	lbHost, err := nl.AddHostOn("lbnet", "lb", lbIP, lbBinds, hosts)
	if err != nil {
		return nil, err
	}
	if c.lb, err = lab.NewNode(lbHost, bootstrap.Node{}); err != nil {
		return nil, err
	}
	if err := c.startHAProxy(); err != nil {
		return nil, err
	}
	rendered := bootstrap.ControlPlane{
		ClusterName: s.clusterName, KubernetesVersion: s.kubernetesVersion, Endpoint: c.endpoint,
		PodCIDR: s.podCIDR, ServiceCIDR: s.serviceCIDR, EtcdEndpoints: strings.Split(s.etcd.ClientEndpoints(), ","),
		LeaderElection: s.leaderElection, InitZone: s.zones[0],
	}
	for i, zone := range s.zones {
		n, err := lab.AddControlPlaneNode(nl, zoneNetwork(i), nodeName(i), zoneNet(i)+".21", hosts, rendered,
			bootstrap.ControlPlaneParams{Zone: zone, Region: s.region, SecretID: "control-plane", CACertPEM: string(c.k8sCA.CertPEM), Assets: lab.UnusedAssets()}, store)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	if err := c.initFirstNode(); err != nil {
		return nil, err
	}
	for _, n := range c.nodes[1:] {
		if err := n.KubeadmJoinPrepare(); err != nil {
			return nil, err
		}
		if err := startComponents(n); err != nil {
			return nil, err
		}
	}
	if _, err := c.waitFor("every node in rotation", 180*time.Second, c.fullyHealthy); err != nil {
		return nil, err
	}
	return c, nil
}

// bootEtcd launches every etcd member at once, each an instance booted
// from its launch template's user-data in its zone, against the AWS double
// holding what the stack's program declared, and waits until all are
// healthy.
func (c *cluster) bootEtcd(dir string) error {
	if err := c.net.AddNetwork("awsnet", "10.210.200.1"); err != nil {
		return err
	}
	cloud, err := lab.StartCloud(c.net, "awsnet", awsIP, c.stack.region, dir+"/cloud")
	if err != nil {
		return err
	}
	c.cloud = cloud
	cloud.Logf = c.logf
	if err := cloud.Declare(c.stack.declared); err != nil {
		return err
	}
	start := time.Now()
	for i, m := range c.stack.etcd.Members {
		host, err := c.net.AddHostOn(zoneNetwork(i), m.Name, zoneNet(i)+".11", nil, nil)
		if err != nil {
			return err
		}
		userData, err := lab.UserData(c.stack.declared, bootstrap.EtcdMemberTag, m.Name)
		if err != nil {
			return err
		}
		group := cloud.NewNodeGroup(c.stack.rootfs, m.Name, m.Zone, host, userData)
		c.members = append(c.members, group)
		if err := group.Start(); err != nil {
			return err
		}
	}
	if _, err := c.waitFor("etcd healthy", 3*time.Minute, c.etcdHealthy); err != nil {
		for _, m := range c.members {
			c.logf("%s console:\n%s", m.Name, m.Instance.ConsoleTail(30))
		}
		return err
	}
	c.etcdBoot = time.Since(start)
	return nil
}

// declaredCA is the CA the program issued under name, key included, so
// that the rehearsal signs its own clients with it.
func declaredCA(resources []mockrun.Resource, name string) (*pki.Pair, error) {
	var cert, key string
	for _, r := range resources {
		switch {
		case r.Name == name && r.Type == "tls:index/selfSignedCert:SelfSignedCert":
			cert = r.Outputs["certPem"].StringValue()
		case r.Name == name && r.Type == "tls:index/privateKey:PrivateKey":
			key = r.Outputs["privateKeyPem"].StringValue()
		}
	}
	if cert == "" || key == "" {
		return nil, fmt.Errorf("rehearsal: the program declares no CA %s", name)
	}
	return pki.ParsePair(cert, key)
}

func zoneNetwork(i int) string { return fmt.Sprintf("zone%d", i) }
func nodeName(i int) string    { return fmt.Sprintf("cp-%c", 'a'+i) }

// initFirstNode does what `kubeadm init` does on the first node before and
// after its API server answers.
func (c *cluster) initFirstNode() error {
	a := c.nodes[0]
	if err := a.KubeadmInit(lab.KubeadmInitBeforeAPI); err != nil {
		return err
	}
	if err := a.StartStaticPod("kube-apiserver"); err != nil {
		return err
	}
	lbAnonymous, err := lab.NewAPI(lbIP, c.endpoint, c.k8sCA, nil, nil, 2*time.Second)
	if err != nil {
		return err
	}
	if _, err := c.waitFor("cp-a "+bootstrap.HealthCheckPath+" through the load balancer", 120*time.Second, lbAnonymous.Ready); err != nil {
		return err
	}
	if err := a.KubeadmInit(lab.KubeadmInitAfterAPI); err != nil {
		return err
	}
	for _, comp := range lab.ControlPlaneComponents[1:] {
		if err := a.StartStaticPod(comp); err != nil {
			return err
		}
	}
	// kube-controller-manager signs cluster-info with the token; joining
	// nodes trust nothing unsigned.
	tokenID, _, _ := strings.Cut(joinToken, ".")
	_, err = c.waitFor("cluster-info signed", 120*time.Second, func() error {
		code, body, err := c.lbAdmin.Do("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", nil)
		if err != nil || code != 200 || !strings.Contains(body, "jws-kubeconfig-"+tokenID) {
			return fmt.Errorf("HTTP %d, err %v", code, err)
		}
		return nil
	})
	return err
}

// startComponents starts a node's control-plane components, in order.
func startComponents(n *lab.Node) error {
	for _, comp := range lab.ControlPlaneComponents {
		if err := n.StartStaticPod(comp); err != nil {
			return err
		}
	}
	return nil
}

// makeClients makes the clients the rehearsal measures with, from the
// machine, which the lab routes to every network.
func (c *cluster) makeClients() error {
	var err error
	if c.admin, err = c.k8sCA.Sign(pki.KubernetesAdmin()); err != nil {
		return err
	}
	if c.lbAdmin, err = lab.NewAPI(lbIP, c.endpoint, c.k8sCA, c.admin, nil, probeTimeout); err != nil {
		return err
	}
	for i := range c.stack.zones {
		anonymous, err := lab.NewAPI(zoneNet(i)+".21", c.endpoint, c.k8sCA, nil, nil, 2*time.Second)
		if err != nil {
			return err
		}
		admin, err := lab.NewAPI(zoneNet(i)+".21", c.endpoint, c.k8sCA, c.admin, nil, 2*time.Second)
		if err != nil {
			return err
		}
		c.nodeAPIs, c.nodeAdmins = append(c.nodeAPIs, anonymous), append(c.nodeAdmins, admin)
	}
	probe, err := c.etcdCA.Sign(pki.EtcdHealthcheckClient())
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(probe.CertPEM, probe.KeyPEM)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.etcdCA.CertPEM)
	for _, m := range c.stack.etcd.Members {
		c.etcdMetrics = append(c.etcdMetrics, &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: m.DNSName}}})
	}
	return nil
}

func (c *cluster) close() {
	if c.net == nil {
		return
	}
	if c.cloud != nil {
		if err := c.cloud.Close(); err != nil {
			c.logf("cleanup: %v", err)
		}
	}
	if err := c.net.Close(); err != nil {
		c.logf("cleanup: %v", err)
	}
	c.net = nil
}
