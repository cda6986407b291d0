package rehearsal

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/pki"
)

// Load balancer health checks the rehearsal compares.
const (
	healthCheckReadyz = "https-readyz" // kubeha's: HTTPS GET /readyz
	healthCheckTCP    = "tcp"          // kops' and Typhoon's: the port accepts TCP
)

// haproxyConfig is the NLB as haproxy: TCP passthrough on 6443 to every
// control-plane node, checked every interval, out after unhealthy and back
// after healthy checks in a row, as ApiLoadBalancer configures the NLB.
func (c *cluster) haproxyConfig() string {
	h := c.cfg.API.HealthCheck
	check := fmt.Sprintf("check inter %ds fall %d rise %d", h.IntervalSeconds, h.UnhealthyThreshold, h.HealthyThreshold)
	var httpCheck string
	if c.check == healthCheckReadyz {
		check += " check-ssl verify none"
		httpCheck = "  option httpchk GET " + bootstrap.HealthCheckPath + "\n  http-check expect status 200\n"
	}
	var servers strings.Builder
	for i := range c.cfg.Zones[:3] {
		fmt.Fprintf(&servers, "  server cp-%c %s.21:%d %s\n", 'a'+i, zoneNet(i), bootstrap.APIServerPort, check)
	}
	return fmt.Sprintf(`global
  maxconn 4096
defaults
  mode tcp
  timeout connect %ds
  timeout client 10m
  timeout server 10m
frontend api
  bind %s:%d
  default_backend apiservers
backend apiservers
%s%slisten stats
  mode http
  bind %s:%d
  stats enable
  stats uri /stats
`, h.TimeoutSeconds, lbIP, bootstrap.APIServerPort, httpCheck, servers.String(), lbIP, lbStats)
}

// startHAProxy (re)starts haproxy with the current health check.
func (c *cluster) startHAProxy() error {
	if c.haproxy != nil {
		c.lb.Stop(c.haproxy)
	}
	if err := os.WriteFile(filepath.Join(c.lb.Root, "etc/haproxy/haproxy.cfg"), []byte(c.haproxyConfig()), 0o644); err != nil {
		return err
	}
	c.haproxy = c.lb.Command(nil, "haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg")
	log, err := os.OpenFile(filepath.Join(c.lb.Root, "haproxy.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	c.haproxy.Stdout, c.haproxy.Stderr = log, log
	return c.lb.Start(c.haproxy)
}

// backendUp says, by node name, whether haproxy sends it traffic.
func (c *cluster) backendUp() (map[string]bool, error) {
	resp, err := quick.Get(fmt.Sprintf("http://%s:%d/stats;csv", lbIP, lbStats))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		return nil, err
	}
	up := map[string]bool{}
	for _, row := range rows {
		if len(row) > 17 && row[0] == "apiservers" && strings.HasPrefix(row[1], "cp-") {
			up[row[1]] = strings.HasPrefix(row[17], "UP")
		}
	}
	return up, nil
}

var quick = &http.Client{Timeout: 2 * time.Second}

// adminClient talks to the API as cluster-admin, through the load balancer
// by name, as kubectl with the stack's kubeconfig would.
func (c *cluster) adminClient() *http.Client {
	cert, _ := tls.X509KeyPair(c.admin.CertPEM, c.admin.KeyPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.k8sCA.CertPEM)
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: c.endpoint},
		// A new connection per request, so the load balancer chooses a
		// node for each, as for many clients.
		DisableKeepAlives: true,
	}}
}

func (c *cluster) api(method, path string, body any) (int, string, error) {
	return call(c.adminClient(), method, fmt.Sprintf("https://%s:%d%s", lbIP, bootstrap.APIServerPort, path), body)
}

func call(client *http.Client, method, url string, body any) (int, string, error) {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, reader)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), nil
}

// readyz asks one API server (or the load balancer) directly.
func (c *cluster) readyz(ip string) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	code, body, err := call(client, "GET", fmt.Sprintf("https://%s:%d%s", ip, bootstrap.APIServerPort, bootstrap.HealthCheckPath), nil)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("HTTP %d %s", code, body)
	}
	return nil
}

// etcdClient reads a member's TLS metrics port with the client
// certificate, as Prometheus does.
func (c *cluster) etcdClient(m *member) *http.Client {
	c.etcdProbeOnce.Do(func() {
		pair, err := c.etcdCA.Sign(pki.EtcdHealthcheckClient())
		if err == nil {
			c.etcdProbe, _ = tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
		}
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.etcdCA.CertPEM)
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{c.etcdProbe}, RootCAs: roots, ServerName: m.spec.DNSName},
	}}
}

// etcdState is what a member says of itself: healthy, and leader.
func (c *cluster) etcdState(m *member) (healthy, leader bool) {
	url := fmt.Sprintf("https://%s:%d", m.host.IP, bootstrap.EtcdTLSMetricsPort)
	client := c.etcdClient(m)
	code, body, err := call(client, "GET", url+"/health", nil)
	healthy = err == nil && code == 200 && strings.Contains(body, `"health":"true"`)
	if _, metrics, err := call(client, "GET", url+"/metrics", nil); err == nil {
		leader = strings.Contains(metrics, "\netcd_server_is_leader 1")
	}
	return healthy, leader
}

// etcdLeader is the index of the member that leads, or -1.
func (c *cluster) etcdLeader() int {
	for i, m := range c.members {
		if _, leader := c.etcdState(m); leader {
			return i
		}
	}
	return -1
}

func (c *cluster) etcdHealthy() error {
	for _, m := range c.members {
		if healthy, _ := c.etcdState(m); !healthy {
			return fmt.Errorf("%s not healthy", m.spec.Name)
		}
	}
	return nil
}

// fullyHealthy: every etcd member healthy, every API server ready and in
// haproxy's rotation, both Leases held.
func (c *cluster) fullyHealthy() error {
	if err := c.etcdHealthy(); err != nil {
		return err
	}
	up, err := c.backendUp()
	if err != nil {
		return err
	}
	for _, n := range c.nodes {
		if err := c.readyz(n.host.IP); err != nil {
			return fmt.Errorf("%s: %v", n.name, err)
		}
		if !up[n.name] {
			return fmt.Errorf("%s is not in the load balancer's rotation", n.name)
		}
	}
	for _, lease := range []string{"kube-scheduler", "kube-controller-manager"} {
		if holder, err := c.leaseHolder(lease); err != nil || holder == "" {
			return fmt.Errorf("lease %s: %v", lease, err)
		}
	}
	return nil
}

// leaseHolder is the node holding a kube-system Lease ("cp-a").
func (c *cluster) leaseHolder(name string) (string, error) {
	code, body, err := c.api("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+name, nil)
	if err != nil || code != 200 {
		return "", fmt.Errorf("HTTP %d %v", code, err)
	}
	var lease struct {
		Spec struct {
			HolderIdentity string `json:"holderIdentity"`
		}
	}
	if err := json.Unmarshal([]byte(body), &lease); err != nil {
		return "", err
	}
	holder, _, _ := strings.Cut(lease.Spec.HolderIdentity, "_")
	return holder, nil
}

// waitFor polls ok until it returns nil, and says how long that took.
func (c *cluster) waitFor(what string, limit time.Duration, ok func() error) (time.Duration, error) {
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		if err := c.ctx.Err(); err != nil {
			return 0, err
		}
		if err = ok(); err == nil {
			return time.Since(start), nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0, fmt.Errorf("rehearsal: %s: not within %s: %v", what, limit, err)
}

// probe writes and reads objects through the load balancer about ten
// times a second, and keeps every answer.
type probe struct {
	c       *cluster
	client  *http.Client
	mu      sync.Mutex
	results []result
	acked   []string
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

type result struct {
	started, at time.Time
	ok          bool
}

const probeLabel = "kubeha.io/rehearsal-probe"

func (c *cluster) startProbe() *probe {
	p := &probe{c: c, client: c.adminClient(), stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// loop starts a write-then-read every 100 ms, each on its own connection,
// at most 16 at once, so a request stuck on a dead node does not stop the
// others.
func (p *probe) loop() {
	defer close(p.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	slots := make(chan struct{}, 16)
	var running sync.WaitGroup
	defer running.Wait()
	for seq := 0; ; seq++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // all slots busy: the API is stalled; waiting is the measurement
		}
		running.Add(1)
		go func() {
			defer func() { <-slots; running.Done() }()
			p.writeAndRead(fmt.Sprintf("probe-%06d", seq))
		}()
	}
}

func (p *probe) writeAndRead(name string) {
	url := fmt.Sprintf("https://%s:%d/api/v1/namespaces/default/configmaps", lbIP, bootstrap.APIServerPort)
	started := time.Now()
	code, _, err := call(p.client, "POST", url, map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "labels": map[string]any{probeLabel: "true"}},
		"data":     map[string]any{"written": started.Format(time.RFC3339Nano)},
	})
	wrote := err == nil && code == http.StatusCreated
	read := false
	if wrote {
		code, _, err := call(p.client, "GET", url+"/"+name, nil)
		read = err == nil && code == http.StatusOK
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if wrote {
		p.acked = append(p.acked, name)
	}
	p.results = append(p.results, result{started: started, at: time.Now(), ok: wrote && read})
}

// close stops the probe; it is safe to call more than once.
func (p *probe) close() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

// window summarizes the probe's results between from and to: requests,
// failures, and the longest time without a success.
func (p *probe) window(from, to time.Time) (requests, failures int, longestGap time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	last := from
	for _, r := range p.results {
		if r.started.Before(from) || r.at.After(to) {
			continue
		}
		requests++
		if !r.ok {
			failures++
			continue
		}
		longestGap = max(longestGap, r.at.Sub(last))
		last = r.at
	}
	return requests, failures, max(longestGap, to.Sub(last))
}

// lostWrites lists acknowledged writes the cluster no longer has: every
// write acknowledged before the list was asked for must be in it.
func (p *probe) lostWrites() ([]string, error) {
	p.mu.Lock()
	acked := slices.Clone(p.acked)
	p.mu.Unlock()
	// A list of thousands of objects, right after a fault, may be slow or
	// land on a node still settling: a longer timeout, a few tries.
	client := p.c.adminClient()
	client.Timeout = 30 * time.Second
	url := fmt.Sprintf("https://%s:%d/api/v1/namespaces/default/configmaps?labelSelector=%s%%3Dtrue", lbIP, bootstrap.APIServerPort, probeLabel)
	var code int
	var body string
	var err error
	for try := 0; try < 5; try++ {
		if code, body, err = call(client, "GET", url, nil); err == nil && code == 200 {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil || code != 200 {
		return nil, fmt.Errorf("listing the probe's objects: HTTP %d %v", code, err)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
		}
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, item := range list.Items {
		have[item.Metadata.Name] = true
	}
	var lost []string
	for _, name := range acked {
		if !have[name] {
			lost = append(lost, name)
		}
	}
	return lost, nil
}
