package kubeapi

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/pki"
)

// `kubeha upgrade` reaches the API with the stack's kubeconfig output:
// the server's certificate checked against its CA for the kubeconfig's
// host name, also through --server (a tunnel), with the admin's client
// certificate.
func TestFromKubeconfig(t *testing.T) {
	ca, err := pki.Issue(pki.Spec{CommonName: "kubernetes", IsCA: true, ValidityHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	const host = "api.kubeha-dev.example"
	serving, err := ca.Sign(pki.Spec{CommonName: "kube-apiserver", DNSNames: []string{host}, Usages: []pki.Usage{pki.ServerAuth}, ValidityHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ca.Sign(pki.KubernetesAdmin())
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(r.TLS.PeerCertificates[0].Subject.CommonName))
	}))
	if server.TLS, err = tlsServerConfig(serving, ca); err != nil {
		t.Fatal(err)
	}
	server.StartTLS()
	defer server.Close()
	addr := strings.TrimPrefix(server.URL, "https://")

	// The kubeconfig names the load balancer, which this machine cannot
	// resolve: --server reaches the API server, its name still checked.
	config, err := bootstrap.AdminKubeconfig("kubeha-dev", "https://"+host+":6443", string(ca.CertPEM), string(admin.CertPEM), string(admin.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	api, err := FromKubeconfig([]byte(config), addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := api.Do(http.MethodGet, "/version", nil)
	if err != nil || code != http.StatusOK || body != pki.KubernetesAdmin().CommonName {
		t.Errorf("GET /version: HTTP %d %q (%v), want the admin's certificate seen", code, body, err)
	}
	// A kubeconfig naming another host than the certificate's is refused.
	other := strings.Replace(config, host, "elsewhere.example", 1)
	if api, err = FromKubeconfig([]byte(other), addr, 5*time.Second); err == nil {
		if _, _, err = api.Do(http.MethodGet, "/version", nil); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("a server name the certificate does not hold: %v, want a certificate error", err)
		}
	}
	for name, bad := range map[string]string{
		"no current context": strings.Replace(config, "current-context:", "x-current-context:", 1),
		"plain http":         strings.Replace(config, "https://"+host, "http://"+host, 1),
	} {
		if _, err := FromKubeconfig([]byte(bad), "", time.Second); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// tlsServerConfig serves with serving and asks for a client certificate
// of ca's.
func tlsServerConfig(serving, ca *pki.Pair) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		return nil, err
	}
	clients := x509.NewCertPool()
	clients.AppendCertsFromPEM(ca.CertPEM)
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: clients, ClientAuth: tls.VerifyClientCertIfGiven}, nil
}
