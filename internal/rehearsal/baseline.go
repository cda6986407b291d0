package rehearsal

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
)

// checkBaseline holds the booted cluster to the security baseline
// (design.md) as its nodes set it up, each check one that a mistake in the
// rendered configuration would fail: anonymous requests reach health
// endpoints only; Secrets are encrypted in etcd and audited without their
// payload; the leader-elected components use their node's own API server;
// the join token from the cluster secret is in the cluster and
// never expires, and the timer that keeps it so runs on every node; the
// servers offer strong TLS cipher suites only.
func (c *cluster) checkBaseline() error {
	if err := c.checkCipherSuites(); err != nil {
		return err
	}
	anonymous := c.nodeAPIs[0]
	for _, path := range []string{"/api", "/api/v1/namespaces/kube-public/configmaps"} {
		if code, body, err := anonymous.Do("GET", path, nil); err != nil || code != http.StatusUnauthorized {
			return fmt.Errorf("anonymous GET %s = HTTP %d %s (%v), want 401", path, code, body, err)
		}
	}
	if code, body, err := c.lbAdmin.Do("GET", "/api/v1/namespaces/kube-system", nil); err != nil || code != http.StatusOK {
		return fmt.Errorf("the admin kubeconfig's identity (O=kubeadm:cluster-admins) got HTTP %d %s (%v), want 200", code, body, err)
	}
	// The private API's way in: each node's port 22 is its API server, as
	// an EC2 Instance Connect Endpoint tunnel reaches it. The first
	// connection starts the node's proxy (socket activation) while workers
	// boot beside it, so it may take a few seconds; the journal says why not.
	for i, n := range c.nodes {
		tunnel, err := lab.NewAPI(fmt.Sprintf("%s.21:%d", zoneNet(i), bootstrap.APITunnelPort), c.endpoint, c.k8sCA, c.admin, 5*time.Second)
		if err != nil {
			return err
		}
		what := fmt.Sprintf("the API through %s's port %d (the Instance Connect Endpoint's way in)", n.Name, bootstrap.APITunnelPort)
		took, err := c.waitFor(what, 30*time.Second, func() error {
			if code, body, err := tunnel.Do("GET", "/api/v1/namespaces/kube-system", nil); err != nil || code != http.StatusOK {
				return fmt.Errorf("HTTP %d %s (%v), want 200", code, body, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%w\n%s", err, n.UnitLog("kubeha-api-tunnel.service"))
		}
		c.logf("%s answered after %.1fs", what, took.Seconds())
	}

	const name, payload = "kubeha-baseline", "hunter2-kubeha"
	secret := map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]string{"name": name},
		"stringData": map[string]string{"password": payload}}
	if err := c.change(http.MethodPost, "/api/v1/namespaces/default/secrets", secret, http.StatusCreated, http.StatusConflict); err != nil {
		return err
	}
	stored, err := c.etcdValue("/registry/secrets/default/" + name)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(stored, "k8s:enc:secretbox:v1:key1:") || strings.Contains(stored, payload) {
		return fmt.Errorf("the Secret in etcd starts %q: not secretbox-encrypted", stored[:min(len(stored), 40)])
	}
	audited := 0
	for _, n := range c.nodes {
		log, err := os.ReadFile(filepath.Join(n.Instance.Root, bootstrap.AuditLogPath))
		if err != nil {
			return fmt.Errorf("%s's audit log: %w", n.Name, err)
		}
		if bytes.Contains(log, []byte(payload)) {
			return fmt.Errorf("%s's audit log holds a Secret's payload", n.Name)
		}
		if bytes.Contains(log, []byte(`"name":"`+name+`"`)) {
			audited++
		}
	}
	if audited == 0 {
		return fmt.Errorf("no node's audit log records the Secret's creation")
	}

	// The leader-elected components hold their Leases for the stack's
	// term, and talk to their own node's API server, so that a node cut
	// off from the others cannot hold a Lease through them.
	for _, component := range lab.LeaderElected {
		lease, err := c.lbAdmin.Lease(component)
		if want := int(c.stack.leaderElection.LeaseDuration.Seconds()); err != nil || lease.DurationSeconds != want {
			return fmt.Errorf("%s Lease: %ds (%v), want the stack's %ds", component, lease.DurationSeconds, err, want)
		}
	}
	for i, n := range c.nodes {
		for _, conf := range []string{"scheduler.conf", "controller-manager.conf"} {
			data, err := os.ReadFile(filepath.Join(n.Instance.Root, filepath.Dir(bootstrap.AdminKubeconfigPath), conf))
			if err != nil {
				return err
			}
			if want := fmt.Sprintf("server: https://%s.21:%d\n", zoneNet(i), bootstrap.APIServerPort); !strings.Contains(string(data), want) {
				return fmt.Errorf("%s's %s does not use its own API server (%s)", n.Name, conf, strings.TrimSpace(want))
			}
		}
	}

	files, err := lab.DeclaredSecret(c.stack.declared, controlPlaneKey)
	if err != nil {
		return err
	}
	id, tokenSecret, _ := strings.Cut(files["bootstrap-token"], ".")
	for _, n := range c.nodes {
		if _, err := n.Instance.Exec("systemctl", "start", "kubeha-token-sync.service"); err != nil {
			return err
		}
	}
	code, body, err := c.lbAdmin.Do("GET", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-"+id, nil)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("the join token %s is not in the cluster: HTTP %d %s (%v)", id, code, body, err)
	}
	var token struct{ Data map[string]string }
	if err := json.Unmarshal([]byte(body), &token); err != nil {
		return err
	}
	if _, expires := token.Data["expiration"]; expires || token.Data["token-secret"] != base64.StdEncoding.EncodeToString([]byte(tokenSecret)) {
		return fmt.Errorf("bootstrap-token-%s is not the cluster secret's, never expiring: %v", id, token.Data)
	}
	return nil
}

// checkCipherSuites: every API server, kubelet and etcd member completes
// a TLS 1.2 handshake with a strong suite and refuses one offering only
// CBC suites, which Go's (and so Kubernetes' and etcd's) defaults accept.
func (c *cluster) checkCipherSuites() error {
	etcdClient := c.etcdMetrics[0].Transport.(*http.Transport).TLSClientConfig
	var servers []string
	for i := range c.nodes {
		servers = append(servers, fmt.Sprintf("%s.21:%d", zoneNet(i), bootstrap.APIServerPort), fmt.Sprintf("%s.21:%d", zoneNet(i), bootstrap.KubeletPort))
	}
	for i := range c.members {
		servers = append(servers, fmt.Sprintf("%s.11:%d", zoneNet(i), bootstrap.EtcdClientPort))
	}
	handshake := func(server string, suites []uint16) error {
		cfg := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: suites, Certificates: etcdClient.Certificates} //nolint:gosec // the handshake is what is checked
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", server, cfg)
		if err == nil {
			conn.Close()
		}
		return err
	}
	weak := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
	for _, server := range servers {
		if err := handshake(server, nil); err != nil {
			return fmt.Errorf("TLS 1.2 with a strong suite to %s: %w", server, err)
		}
		if err := handshake(server, weak); err == nil {
			return fmt.Errorf("%s accepts a TLS 1.2 client offering only CBC suites", server)
		}
	}
	c.logf("strong TLS only: %d servers (API servers, kubelets, etcd) refuse CBC-only clients", len(servers))
	return nil
}

// etcdValue reads a key from etcd through the first member's JSON
// gateway, with the rehearsal's own etcd client certificate (etcd
// authorises any certificate its CA signed).
func (c *cluster) etcdValue(key string) (string, error) {
	var answer struct{ Kvs []struct{ Value []byte } }
	if err := c.etcdGateway("/v3/kv/range", map[string]any{"key": []byte(key)}, &answer); err != nil {
		return "", fmt.Errorf("etcd's answer for %s: %w", key, err)
	}
	if len(answer.Kvs) != 1 {
		return "", errors.New("etcd holds no " + key)
	}
	return string(answer.Kvs[0].Value), nil
}

// etcdGateway asks etcd's JSON gateway on the client port (request as
// JSON, []byte fields base64 as the gateway wants them), of the first
// member that answers.
func (c *cluster) etcdGateway(path string, request, answer any) error {
	body, err := json.Marshal(request)
	if err != nil {
		return err
	}
	for i, m := range c.members {
		url := fmt.Sprintf("https://%s:%d%s", m.Host.IP, bootstrap.EtcdClientPort, path)
		resp, postErr := c.etcdMetrics[i].Post(url, "application/json", bytes.NewReader(body))
		if postErr != nil {
			err = postErr
			continue
		}
		return json.Unmarshal([]byte(readAll(resp)), answer)
	}
	return err
}
