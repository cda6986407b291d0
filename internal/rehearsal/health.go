package rehearsal

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
)

// etcdState is what member i says of itself on its TLS metrics port:
// healthy, and leader.
func (c *cluster) etcdState(i int) (healthy, leader bool) {
	url := fmt.Sprintf("https://%s:%d", c.members[i].Host.IP, bootstrap.EtcdTLSMetricsPort)
	client := c.etcdMetrics[i]
	if resp, err := client.Get(url + "/health"); err == nil {
		body := readAll(resp)
		healthy = resp.StatusCode == 200 && strings.Contains(body, `"health":"true"`)
	}
	if resp, err := client.Get(url + "/metrics"); err == nil {
		leader = strings.Contains(readAll(resp), "\netcd_server_is_leader 1")
	}
	return healthy, leader
}

// etcdAt fails unless every member says it runs etcd version (vX.Y.Z).
func (c *cluster) etcdAt(version string) error {
	want := fmt.Sprintf("\netcd_server_version{server_version=%q} 1", strings.TrimPrefix(version, "v"))
	for i, m := range c.members {
		url := fmt.Sprintf("https://%s:%d/metrics", m.Host.IP, bootstrap.EtcdTLSMetricsPort)
		resp, err := c.etcdMetrics[i].Get(url)
		if err != nil {
			return fmt.Errorf("%s's metrics: %w", m.Name, err)
		}
		if !strings.Contains(readAll(resp), want) {
			return fmt.Errorf("%s does not run etcd %s", m.Name, version)
		}
	}
	return nil
}

// etcdLeader is the index of the member that leads, or -1.
func (c *cluster) etcdLeader() int { return c.etcdLeaderAmong(nil) }

// etcdLeaderAmong is the index of the member that leads, asking only the
// members not lost, or -1.
func (c *cluster) etcdLeaderAmong(lost map[int]bool) int {
	for i := range c.members {
		if lost[i] {
			continue
		}
		if _, leader := c.etcdState(i); leader {
			return i
		}
	}
	return -1
}

// nodeAPI is cluster-admin on the first node not lost, asked directly.
func (c *cluster) nodeAPI(lost map[string]bool) *lab.API {
	for i, n := range c.nodes {
		if !lost[n.Name] {
			return c.nodeAdmins[i]
		}
	}
	return c.lbAdmin
}

func (c *cluster) etcdHealthy() error {
	for i, m := range c.members {
		if healthy, _ := c.etcdState(i); !healthy {
			return fmt.Errorf("%s not healthy", m.Name)
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
	for i, n := range c.nodes {
		if err := c.nodeAPIs[i].Ready(); err != nil {
			return fmt.Errorf("%s: %v", n.Name, err)
		}
		if !up[n.Name] {
			return fmt.Errorf("%s is not in the load balancer's rotation", n.Name)
		}
	}
	for _, name := range lab.LeaderElected {
		if holder, err := c.leaseHolder(name); err != nil || holder == "" {
			return fmt.Errorf("lease %s: %v", name, err)
		}
	}
	return nil
}

// apiServerLogs are the last lines each API server that is not ready
// logged, and how often its container restarted, to say why.
func (c *cluster) apiServerLogs() string {
	var out strings.Builder
	for i, n := range c.nodes {
		if n.Instance == nil || c.nodeAPIs[i].Ready() == nil {
			continue
		}
		log, err := n.Instance.Exec("sh", "-c", "ls /var/log/pods/kube-system_kube-apiserver-*/kube-apiserver/; tail -n 25 $(ls -t /var/log/pods/kube-system_kube-apiserver-*/kube-apiserver/*.log | head -1)")
		fmt.Fprintf(&out, "%s's kube-apiserver (one log per container restart), its last lines (%v):\n%s\n", n.Name, err, log)
	}
	return out.String()
}

// leaseHolder is the node holding a kube-system Lease ("cp-a").
func (c *cluster) leaseHolder(name string) (string, error) {
	lease, err := c.lbAdmin.Lease(name)
	return lease.Holder, err
}

// waitFor polls ok until it returns nil, and says how long that took.
func (c *cluster) waitFor(what string, limit time.Duration, ok func() error) (time.Duration, error) {
	took, err := lab.WaitFor(c.ctx, what, limit, ok)
	if err != nil {
		return 0, fmt.Errorf("rehearsal: %w", err)
	}
	return took, nil
}

// askAgainFor is how long the rehearsal asks the API again for a change
// or a read of its own (not the probe's, which measures): on a machine
// that nine nodes keep busy, one request through the load balancer may
// find no answer in probeTimeout.
const askAgainFor = time.Minute

// askAgain is what read returns, asked again for up to askAgainFor.
func askAgain[T any](c *cluster, what string, read func() (T, error)) (T, error) {
	var v T
	_, err := c.waitFor(what, askAgainFor, func() (err error) {
		v, err = read()
		return err
	})
	return v, err
}

// change makes a change of the rehearsal's own through the load
// balancer, asking again for up to askAgainFor while no answer comes or
// the API answers 429 or 5xx. done are the answers that mean it is made;
// a retry may find what a lost answer made (409 for a create, 404 for a
// delete), so list those too.
func (c *cluster) change(method, path string, body any, done ...int) error {
	what := method + " " + path
	var refused error
	_, err := c.waitFor(what, askAgainFor, func() error {
		code, answer, err := c.lbAdmin.Do(method, path, body)
		switch {
		case err == nil && slices.Contains(done, code):
			return nil
		case err == nil && code < 500 && code != http.StatusTooManyRequests:
			refused = fmt.Errorf("rehearsal: %s: HTTP %d %.300s", what, code, answer)
			return nil // asking again would get the same answer
		}
		return fmt.Errorf("%s: HTTP %d %.300s (%v)", what, code, answer, err)
	})
	return cmp.Or(err, refused)
}
