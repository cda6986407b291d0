// Package rehearsal runs the cluster a stack renders, for real, on one
// Linux machine: each zone is a routed network with one etcd member and one
// control-plane node, each node its own network namespace; haproxy, set up
// from the stack's load balancer health check, stands in for the NLB. Then
// it drills the failures kubeha claims to survive and measures them.
package rehearsal

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	lbAdmin   = 9999 // haproxy's runtime API
	machineIP = "10.210.254.2"
	hubIP     = "10.210.254.1"
	// awsIP answers every AWS endpoint and the VPC's DNS.
	awsIP = "10.210.200.2"
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
	// members and nodes are the etcd members' and control-plane nodes'
	// auto-scaling groups of one.
	members []*lab.NodeGroup
	nodes   []*lab.NodeGroup
	// workers are one worker group of one in each zone.
	workers []*lab.NodeGroup
	// registry serves the add-on images (startRegistry).
	registry *http.Server
	// stopNodeInit stops the stand-in for the cloud controller manager's
	// node initialisation (initializeNodes).
	stopNodeInit chan struct{}
	// boot is from launching every node to the cluster whole; etcdBoot to
	// every member healthy.
	boot, etcdBoot time.Duration
	wholeAt        time.Time
	lb             *lab.Node
	check          string // healthCheckReadyz or healthCheckTCP
	// registered is, by node, whether the load balancer holds it as a
	// target (registerTargets); lbMu guards it and haproxy's restarts.
	registered    map[string]bool
	lbMu          sync.Mutex
	stopRegistrar chan struct{}
	k8sCA         *pki.Pair
	etcdCA        *pki.Pair
	// lbAdmin is cluster-admin through the load balancer, as kubectl with
	// the stack's kubeconfig; nodeAPIs ask each node directly, anonymously,
	// as the load balancer's check does.
	admin   *pki.Pair
	lbAdmin *lab.API
	// lbAnonymous is through the load balancer with no certificate.
	lbAnonymous *lab.API
	nodeAPIs    []*lab.API
	// nodeAdmins are cluster-admin on each node, asked directly.
	nodeAdmins []*lab.API
	// zoneCutAt is when drill c cut zone a, which drill e brings back.
	zoneCutAt time.Time
	// nodesDeleted is when initializeNodes deleted each Node whose
	// instance was gone, by name.
	nodesDeleted sync.Map
	// etcdMetrics are etcd clients, one per member (its name for TLS):
	// they read each TLS metrics port, as Prometheus does, and the baseline
	// reads a key through the client port.
	etcdMetrics []*http.Client
	logf        func(format string, args ...any)
}

// setUp builds the topology, the load balancer and the AWS double, then
// launches every etcd member and control-plane node at once, each an
// instance booted from its launch template's user-data, and waits until
// the cluster is whole.
func setUp(ctx context.Context, s stack, dir string, logf func(string, ...any)) (_ *cluster, err error) {
	nl, err := netlab.New(labPrefix, dir)
	if err != nil {
		return nil, err
	}
	c := &cluster{ctx: ctx, stack: s, net: nl, check: healthCheckReadyz, logf: logf, registered: map[string]bool{},
		stopRegistrar: make(chan struct{}), stopNodeInit: make(chan struct{})}
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
	for network, gateway := range map[string]string{"lbnet": "10.210.100.1", "awsnet": "10.210.200.1"} {
		if err := nl.AddNetwork(network, gateway); err != nil {
			return nil, err
		}
	}
	if err := nl.ConnectMachine(machineIP, hubIP, labCIDR); err != nil {
		return nil, err
	}
	// The rehearsal's own clients use the program's CAs and endpoint.
	if c.etcdCA, err = declaredCA(s.declared, s.clusterName+"-etcd-ca"); err != nil {
		return nil, err
	}
	if c.k8sCA, err = declaredCA(s.declared, s.clusterName+"-control-plane-ca"); err != nil {
		return nil, err
	}
	firstNode, err := lab.UserData(s.declared, "Name", controlPlaneGroup(s, 0))
	if err != nil {
		return nil, err
	}
	if c.endpoint, err = apiEndpoint(firstNode); err != nil {
		return nil, err
	}
	if err := c.makeClients(); err != nil {
		return nil, err
	}

	lbHost, err := nl.AddHostOn("lbnet", "lb", lbIP, lbBinds, nil)
	if err != nil {
		return nil, err
	}
	if c.lb, err = lab.NewNode(lbHost, bootstrap.Node{}); err != nil {
		return nil, err
	}
	if err := c.startHAProxy(); err != nil {
		return nil, err
	}
	go c.registerTargets(c.stopRegistrar)
	if c.cloud, err = lab.StartCloud(nl, "awsnet", awsIP, s.region, dir+"/cloud"); err != nil {
		return nil, err
	}
	c.cloud.Logf = c.logf
	if err := c.cloud.Declare(s.declared); err != nil {
		return nil, err
	}
	// The endpoint's name is the load balancer's, in the VPC's DNS.
	c.cloud.DNS.AddHost(c.endpoint, net.ParseIP(lbIP))
	if err := c.startRegistry(s.addonImages); err != nil {
		return nil, err
	}
	go c.initializeNodes(c.stopNodeInit)
	if err := c.launchAll(); err != nil {
		return nil, err
	}
	return c, nil
}

// launchAll starts every etcd member's and control-plane node's group at
// once, from nothing, and measures until the cluster is whole.
func (c *cluster) launchAll() error {
	s := c.stack
	start := time.Now()
	for i, m := range s.etcd.Members {
		group, err := c.group(zoneNetwork(i), m.Name, m.Zone, zoneNet(i)+".11", bootstrap.EtcdMemberTag, m.Name)
		if err != nil {
			return err
		}
		if hook, timeout := terminationHook(s.declared, group.Tags["Name"]); hook != "" {
			c.cloud.SetTerminationHook(group.Name, hook, timeout)
		}
		c.members = append(c.members, group)
	}
	for i, zone := range s.zones {
		group, err := c.group(zoneNetwork(i), nodeName(i), zone, zoneNet(i)+".21", "Name", controlPlaneGroup(s, i))
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, group)
		c.cloud.SetTargetGroups(group.Name, c.apiTargetGroup())
	}
	c.cloud.TargetHealth = c.targetHealth
	took, err := c.waitFor("etcd healthy", 4*time.Minute, c.etcdHealthy)
	if err != nil {
		c.logConsoles()
		return err
	}
	c.etcdBoot = took
	c.logf("etcd healthy %.0fs after launch", took.Seconds())
	if _, err := c.waitFor("the cluster whole", 8*time.Minute, c.fullyHealthy); err != nil {
		c.logConsoles()
		return err
	}
	c.boot, c.wholeAt = time.Since(start), time.Now()
	// What each node ran is its launch template's user-data, byte for byte.
	for _, g := range append(append([]*lab.NodeGroup{}, c.members...), c.nodes...) {
		ran, err := g.Instance.RanUserData()
		if err != nil {
			return err
		}
		if !bytes.Equal(ran, g.UserData) {
			return fmt.Errorf("rehearsal: %s ran %d bytes of user-data, not its launch template's %d", g.Name, len(ran), len(g.UserData))
		}
	}
	return nil
}

// group makes a node's host and its auto-scaling group of one, whose
// launch template is tagged tag=value, and launches its instance.
func (c *cluster) group(network, name, zone, ip, tag, value string) (*lab.NodeGroup, error) {
	host, err := c.net.AddHostOn(network, name, ip, nil, nil)
	if err != nil {
		return nil, err
	}
	userData, err := lab.UserData(c.stack.declared, tag, value)
	if err != nil {
		return nil, err
	}
	group := c.cloud.NewNodeGroup(c.stack.rootfs, name, zone, host, userData)
	if group.Tags, err = lab.InstanceTags(c.stack.declared, tag, value); err != nil {
		return nil, err
	}
	if group.PutResponseHopLimit, err = lab.PutResponseHopLimit(c.stack.declared, tag, value); err != nil {
		return nil, err
	}
	return group, group.Start()
}

// logConsoles shows what each node printed last, when set-up fails.
func (c *cluster) logConsoles() {
	for _, g := range append(append([]*lab.NodeGroup{}, c.members...), c.nodes...) {
		if g.Instance != nil {
			c.logf("%s console:\n%s", g.Name, g.Instance.ConsoleTail(40))
		}
	}
}

// outsideNames are the unknown names nodes asked the VPC's DNS for, less
// the lab's own: etcd members' records before they are in sync, the
// nodes' hostnames and addresses, which kubeadm and etcd look up (on EC2
// the VPC's resolver answers both), and CoreDNS's loop checks.
func (c *cluster) outsideNames() map[string]int {
	outside := c.cloud.DNS.Unknown()
	_, lab, _ := net.ParseCIDR(labCIDR)
	for name := range outside {
		if strings.HasSuffix(name, "."+bootstrap.EtcdDomain(c.stack.clusterName)) || c.nodeNamed(name) != nil || name == neverGroup || c.workerNamed(name) != nil {
			delete(outside, name)
		}
		if ip := reverseName(name); ip != nil && lab.Contains(ip) || coreDNSLoopCheck(name) {
			delete(outside, name)
		}
		for _, m := range c.members {
			if m.Name == name {
				delete(outside, name)
			}
		}
	}
	return outside
}

// coreDNSLoopCheck says name is one CoreDNS's loop plugin asks its
// upstream once at start ("<random>.<random>." in the root zone, which the
// chart's Corefile forwards): if it comes back, the forward is a loop. It
// names no host.
func coreDNSLoopCheck(name string) bool {
	labels := strings.Split(strings.TrimSuffix(name, "."), ".")
	digits := func(l string) bool {
		_, err := strconv.ParseUint(l, 10, 64)
		return err == nil
	}
	return len(labels) == 2 && digits(labels[0]) && digits(labels[1])
}

// reverseName is the address of a reverse lookup's name
// (11.1.210.10.in-addr.arpa is 10.210.1.11), or nil.
func reverseName(name string) net.IP {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa")
	octets := strings.Split(rest, ".")
	if !ok || len(octets) != 4 {
		return nil
	}
	slices.Reverse(octets)
	return net.ParseIP(strings.Join(octets, "."))
}

// controlPlaneGroup is the Name of zone i's control-plane launch template.
func controlPlaneGroup(s stack, i int) string {
	return fmt.Sprintf("%s-control-plane-%s", s.clusterName, s.zones[i])
}

// apiEndpoint is the API's name in a control-plane node's user-data.
func apiEndpoint(userData []byte) (string, error) {
	doc, err := bootstrap.ReadUserData(userData)
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*API_ENDPOINT=(\S+)$`).FindSubmatch(doc)
	if m == nil {
		return "", fmt.Errorf("rehearsal: no API_ENDPOINT in the control-plane user-data")
	}
	return string(m[1]), nil
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

// makeClients makes the clients the rehearsal measures with, from the
// machine, which the lab routes to every network.
func (c *cluster) makeClients() error {
	var err error
	if c.admin, err = c.k8sCA.Sign(pki.KubernetesAdmin()); err != nil {
		return err
	}
	if c.lbAdmin, err = lab.NewAPI(lbIP, c.endpoint, c.k8sCA, c.admin, probeTimeout); err != nil {
		return err
	}
	if c.lbAnonymous, err = lab.NewAPI(lbIP, c.endpoint, c.k8sCA, nil, probeTimeout); err != nil {
		return err
	}
	for i := range c.stack.zones {
		anonymous, err := lab.NewAPI(zoneNet(i)+".21", c.endpoint, c.k8sCA, nil, 2*time.Second)
		if err != nil {
			return err
		}
		admin, err := lab.NewAPI(zoneNet(i)+".21", c.endpoint, c.k8sCA, c.admin, 2*time.Second)
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
	close(c.stopRegistrar)
	close(c.stopNodeInit)
	if c.registry != nil {
		_ = c.registry.Close()
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
