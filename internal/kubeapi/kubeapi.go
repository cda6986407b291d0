// Package kubeapi is a small client of the Kubernetes API, as kubectl is
// one: the rehearsal's, and `kubeha upgrade`'s from a kubeconfig.
package kubeapi

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/pki"
	"gopkg.in/yaml.v3"
)

// API is a client of the Kubernetes API at one address (an API server or
// the load balancer), as kubectl would be: it verifies the serving
// certificate against the cluster CA for the endpoint's name, and
// authenticates with a client certificate, or not at all. Every request
// has its own connection, so that a load balancer chooses a server for
// each, as for many clients.
type API struct {
	base   string
	client *http.Client
	// bearer, if set, is a token every request carries.
	bearer string
}

// WithToken is the same client, authenticating with a bearer token.
func (a *API) WithToken(token string) *API {
	b := *a
	b.bearer = token
	return &b
}

// NewAPI is a client of https://ip:bootstrap.APIServerPort, or of
// https://ip when ip holds a port, authenticating with user's
// certificate, or not at all when user is nil.
func NewAPI(ip, endpoint string, ca, user *pki.Pair, timeout time.Duration) (*API, error) {
	var cert, key []byte
	if user != nil {
		cert, key = user.CertPEM, user.KeyPEM
	}
	addr := ip
	if !strings.Contains(ip, ":") {
		addr = fmt.Sprintf("%s:%d", ip, bootstrap.APIServerPort)
	}
	return newAPI(addr, endpoint, ca.CertPEM, cert, key, timeout)
}

func newAPI(addr, serverName string, caPEM, certPEM, keyPEM []byte, timeout time.Duration) (*API, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("kubeapi: the cluster CA is not PEM")
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName}
	if certPEM != nil {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &API{
		base:   "https://" + addr,
		client: &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}},
	}, nil
}

// FromKubeconfig is a client of a kubeconfig's current context, which
// authenticates with a client certificate (kubeha's admin kubeconfig).
// server, if not empty, is where to connect instead (host:port), the
// certificate still checked for the kubeconfig's host name: kubectl's
// --server with --tls-server-name, as through a tunnel.
func FromKubeconfig(data []byte, server string, timeout time.Duration) (*API, error) {
	var kc struct {
		Clusters []struct {
			Name    string
			Cluster struct {
				Server string
				CA     string `yaml:"certificate-authority-data"`
			}
		}
		Users []struct {
			Name string
			User struct {
				Cert string `yaml:"client-certificate-data"`
				Key  string `yaml:"client-key-data"`
			}
		}
		Contexts []struct {
			Name    string
			Context struct{ Cluster, User string }
		}
		Current string `yaml:"current-context"`
	}
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	var clusterName, userName string
	for _, c := range kc.Contexts {
		if c.Name == kc.Current {
			clusterName, userName = c.Context.Cluster, c.Context.User
		}
	}
	decode := func(b64 string) []byte {
		out, _ := base64.StdEncoding.DecodeString(b64)
		return out
	}
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		u, err := url.Parse(c.Cluster.Server)
		if err != nil || u.Scheme != "https" {
			return nil, fmt.Errorf("kubeconfig: cluster %s's server %q is not https://host:port", clusterName, c.Cluster.Server)
		}
		for _, user := range kc.Users {
			if user.Name == userName {
				return newAPI(cmp.Or(server, u.Host), u.Hostname(), decode(c.Cluster.CA), decode(user.User.Cert), decode(user.User.Key), timeout)
			}
		}
	}
	return nil, fmt.Errorf("kubeconfig: no cluster and user with client-certificate-data for the current context %q", kc.Current)
}

// Do sends a request with body as JSON, and returns the status and body.
func (a *API) Do(method, path string, body any) (int, string, error) {
	return a.send(method, path, "application/json", body)
}

// Patch sends patch as a JSON merge patch, as `kubectl patch --type merge`.
func (a *API) Patch(path string, patch any) (int, string, error) {
	return a.send(http.MethodPatch, path, "application/merge-patch+json", patch)
}

func (a *API) send(method, path, contentType string, body any) (int, string, error) {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, a.base+path, reader)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", contentType)
	if a.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+a.bearer)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), err
}

// Ready asks bootstrap.HealthCheckPath, as the load balancer does.
func (a *API) Ready() error {
	code, body, err := a.Do("GET", bootstrap.HealthCheckPath, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d %s", bootstrap.HealthCheckPath, code, body)
	}
	return nil
}

// Lease is a kube-system Lease's holder and term.
type Lease struct {
	// Holder is the holding node's name: the holder identity is
	// <hostname>_<id>, a new id each time the component starts.
	Holder, Identity string
	DurationSeconds  int
	// Acquired is when the holder took the Lease.
	Acquired time.Time
}

// Lease reads a kube-system Lease (kube-scheduler,
// kube-controller-manager).
func (a *API) Lease(name string) (Lease, error) {
	code, body, err := a.Do("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+name, nil)
	if err != nil {
		return Lease{}, err
	}
	if code != http.StatusOK {
		return Lease{}, fmt.Errorf("lease %s: HTTP %d %s", name, code, body)
	}
	var lease struct {
		Spec struct {
			HolderIdentity       string    `json:"holderIdentity"`
			LeaseDurationSeconds int       `json:"leaseDurationSeconds"`
			AcquireTime          time.Time `json:"acquireTime"`
		}
	}
	if err := json.Unmarshal([]byte(body), &lease); err != nil {
		return Lease{}, err
	}
	holder, _, _ := strings.Cut(lease.Spec.HolderIdentity, "_")
	return Lease{Holder: holder, Identity: lease.Spec.HolderIdentity, DurationSeconds: lease.Spec.LeaseDurationSeconds, Acquired: lease.Spec.AcquireTime}, nil
}

// LeaderElected are the components that hold a kube-system Lease of
// their own name.
var LeaderElected = []string{"kube-scheduler", "kube-controller-manager"}
