package rehearsal

// Drills of the cluster's credentials: the join token rotated as the
// README says; kubelets' serving certificates, for their own node only.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/pki"
)

// TokenRotation is the join-token drill's: the runbook's `pulumi up` with
// joinTokenGeneration raised, then a sync on the control plane.
type TokenRotation struct {
	// Generation is the joinTokenGeneration rotated to.
	Generation int `json:"generation"`
	// SyncSeconds is from starting the sync until the cluster held the
	// new token only.
	SyncSeconds float64 `json:"syncSeconds"`
	// OldTokenStatus is the API's answer to the old token (401).
	OldTokenStatus int `json:"oldTokenStatus"`
	// NewTokenUser is who the API takes the new token for.
	NewTokenUser string `json:"newTokenUser"`
}

// rotateJoinToken follows the README's runbook: the stack's
// controlPlane.joinTokenGeneration raised, the program run again, and
// what its `pulumi up` changes in AWS (the token entry of both secrets)
// applied to the double. It then starts one node's sync rather than wait
// up to 10 minutes for its timer, and checks that the cluster holds the
// new token only: the old one no longer authenticates, the new one does.
// Nodes replaced by later drills join with the new token.
func (c *cluster) rotateJoinToken() (TokenRotation, error) {
	var r TokenRotation
	old, err := lab.DeclaredSecret(c.stack.declared, "-control-plane-join")
	if err != nil {
		return r, err
	}
	raw, generation, err := raiseTokenGeneration(c.stack.raw)
	if err != nil {
		return r, err
	}
	r.Generation = generation
	newer, err := declare(raw)
	if err != nil {
		return r, err
	}
	rotated, err := lab.DeclaredSecret(newer, "-control-plane-join")
	if err != nil {
		return r, err
	}
	oldToken, newToken := old["bootstrap-token"], rotated["bootstrap-token"]
	oldID, _, _ := strings.Cut(oldToken, ".")
	newID, _, _ := strings.Cut(newToken, ".")
	if oldID == newID {
		return r, fmt.Errorf("generation %d kept the token's ID %s", generation, oldID)
	}
	for _, suffix := range []string{"-control-plane", "-control-plane-join"} {
		if err := c.cloud.SetSecretEntry(c.stack.declared, suffix, "bootstrap-token", newToken); err != nil {
			return r, err
		}
	}
	start := time.Now()
	node := c.nodes[1]
	if _, err := node.Instance.Exec("systemctl", "start", bootstrap.TokenSyncUnit); err != nil {
		return r, fmt.Errorf("%w\n%s", err, node.UnitLog(bootstrap.TokenSyncUnit))
	}
	tokens, err := c.tokenIDs()
	if err != nil {
		return r, err
	}
	r.SyncSeconds = time.Since(start).Seconds()
	if !slices.Equal(tokens, []string{newID}) {
		return r, fmt.Errorf("after the sync the cluster holds tokens %v, want only %s\n%s", tokens, newID, node.UnitLog(bootstrap.TokenSyncUnit))
	}
	review := map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
	// Each API server drops the token once its informer sees the Secret
	// deleted.
	if _, err := c.waitFor("the old token refused", 30*time.Second, func() error {
		code, body, err := c.lbAnonymous.WithToken(oldToken).Do(http.MethodPost, "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
		if err != nil || code != http.StatusUnauthorized {
			return fmt.Errorf("the old token after rotation: HTTP %d %s (%v), want 401", code, body, err)
		}
		r.OldTokenStatus = code
		return nil
	}); err != nil {
		return r, err
	}
	code, body, err := c.lbAnonymous.WithToken(newToken).Do(http.MethodPost, "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
	var who struct {
		Status struct {
			UserInfo struct{ Username string }
		}
	}
	if err == nil {
		err = json.Unmarshal([]byte(body), &who)
	}
	if err != nil || code != http.StatusCreated || who.Status.UserInfo.Username != "system:bootstrap:"+newID {
		return r, fmt.Errorf("the new token: HTTP %d %s (%v), want system:bootstrap:%s", code, body, err, newID)
	}
	r.NewTokenUser = who.Status.UserInfo.Username
	return r, nil
}

// tokenIDs are the IDs of the bootstrap tokens the cluster holds.
func (c *cluster) tokenIDs() ([]string, error) {
	code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/namespaces/kube-system/secrets?fieldSelector=type%3Dbootstrap.kubernetes.io%2Ftoken", nil)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("listing bootstrap tokens: HTTP %d %s (%v)", code, body, err)
	}
	var list struct {
		Items []struct {
			Data map[string]string
		}
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, err
	}
	var ids []string
	for _, item := range list.Items {
		id, err := base64.StdEncoding.DecodeString(item.Data["token-id"])
		if err != nil {
			return nil, err
		}
		ids = append(ids, string(id))
	}
	slices.Sort(ids)
	return ids, nil
}

// raiseTokenGeneration is raw with controlPlane.joinTokenGeneration one
// higher, and that generation.
func raiseTokenGeneration(raw map[string]string) (map[string]string, int, error) {
	generation := 0
	out, err := withOptions(raw, "kubeha:controlPlane", func(options map[string]any) error {
		generation = 1
		if g, ok := options["joinTokenGeneration"].(float64); ok {
			generation = int(g)
		}
		generation++
		options["joinTokenGeneration"] = generation
		return nil
	})
	return out, generation, err
}

// KubeletCertificates is how kubelets serve: with certificates from the
// cluster CA, which control-plane-csr-approver.sh gives a node for its own
// name and addresses only.
type KubeletCertificates struct {
	// Verified counts kubelets whose serving certificate verified against
	// the cluster CA for their node's address.
	Verified int `json:"verified"`
	// Proxied counts kubelets the API server reached through the nodes'
	// proxy, verifying them (kubelet-certificate-authority).
	Proxied int `json:"proxied"`
	// Denied are the requests made with a node's credential for another
	// node's name or address, each with the approver's message;
	// DecisionSeconds is the longest from one's creation to its denial.
	Denied          map[string]string `json:"denied"`
	DecisionSeconds float64           `json:"decisionSeconds"`
}

// certificateDaysLeft waits until each control-plane node's renewal
// timer has reported the days left on its shortest-lived certificate,
// and returns the reports.
func (c *cluster) certificateDaysLeft() ([]float64, error) {
	var days []float64
	_, err := c.waitFor("every control-plane node reporting its certificates' days left", 3*time.Minute, func() error {
		days = nil
		for _, m := range c.cloud.Metrics() {
			if m.Name == bootstrap.CertDaysLeftMetric && m.Dimensions[bootstrap.EtcdSnapshotMetricDimension] == c.stack.clusterName {
				days = append(days, m.Value)
			}
		}
		if len(days) < len(c.nodes) {
			return fmt.Errorf("%d reports", len(days))
		}
		return nil
	})
	return days, err
}

// checkKubeletCertificates: every kubelet serves a certificate of the
// cluster CA for its address, the API server reaches each while verifying
// it, and what cp-a's node identity asks for another node is denied.
func (c *cluster) checkKubeletCertificates() (KubeletCertificates, error) {
	r := KubeletCertificates{Denied: map[string]string{}}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.k8sCA.CertPEM)
	for i, n := range c.nodes {
		ip := zoneNet(i) + ".21"
		if _, err := c.waitFor(n.Name+"'s kubelet serving a certificate of the cluster CA", 2*time.Minute, func() error {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", fmt.Sprintf("%s:%d", ip, bootstrap.KubeletPort),
				&tls.Config{RootCAs: roots, ServerName: ip})
			if err == nil {
				conn.Close()
			}
			return err
		}); err != nil {
			return r, fmt.Errorf("%w\n%s\n%s", err, n.UnitLog(bootstrap.CSRApproverUnit), n.UnitLog("kubelet.service"))
		}
		r.Verified++
		code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/nodes/"+nodeName(i)+"/proxy/healthz", nil)
		if err != nil || code != http.StatusOK || body != "ok" {
			return r, fmt.Errorf("the API server to %s's kubelet: HTTP %d %s (%v), want 200 ok", nodeName(i), code, body, err)
		}
		r.Proxied++
	}

	identity, err := c.k8sCA.Sign(pki.Spec{CommonName: "system:node:" + nodeName(0), Organization: "system:nodes",
		Usages: []pki.Usage{pki.ClientAuth}, ValidityHours: 1})
	if err != nil {
		return r, err
	}
	node, err := lab.NewAPI(lbIP, c.endpoint, c.k8sCA, identity, probeTimeout)
	if err != nil {
		return r, err
	}
	other := zoneNet(1) + ".21"
	for name, asked := range map[string]x509.CertificateRequest{
		"kubeha-rehearsal-other-address": {Subject: nodeSubject(nodeName(0)),
			DNSNames: []string{nodeName(0)}, IPAddresses: []net.IP{net.ParseIP(zoneNet(0) + ".21"), net.ParseIP(other)}},
		"kubeha-rehearsal-other-name": {Subject: nodeSubject(nodeName(1)), DNSNames: []string{nodeName(1)}, IPAddresses: []net.IP{net.ParseIP(other)}},
	} {
		message, took, err := c.askServingCertificate(node, name, asked)
		if err != nil {
			return r, fmt.Errorf("%s: %w\n%s", name, err, c.nodes[0].UnitLog(bootstrap.CSRApproverUnit))
		}
		r.Denied[name], r.DecisionSeconds = message, max(r.DecisionSeconds, took.Seconds())
	}
	return r, nil
}

const csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"

func nodeSubject(node string) pkix.Name {
	return pkix.Name{Organization: []string{"system:nodes"}, CommonName: "system:node:" + node}
}

// askServingCertificate posts a kubelet-serving request for asked as
// node, and returns the approver's message once it denied it, or the API
// server's when it refused to create it; approved is an error.
func (c *cluster) askServingCertificate(node *lab.API, name string, asked x509.CertificateRequest) (string, time.Duration, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", 0, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &asked, key)
	if err != nil {
		return "", 0, err
	}
	request := map[string]any{"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": map[string]any{"name": name},
		"spec": map[string]any{"signerName": "kubernetes.io/kubelet-serving", "usages": []string{"digital signature", "server auth"},
			"request": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})}}
	code, body, err := node.Do(http.MethodPost, csrs, request)
	if err == nil && code == http.StatusForbidden {
		// The API server's own admission refuses a node's request naming
		// another node, before any approver sees it.
		var status struct{ Message string }
		err := json.Unmarshal([]byte(body), &status)
		return "refused by the API server: " + status.Message, 0, err
	}
	if err != nil || code != http.StatusCreated {
		return "", 0, fmt.Errorf("creating it as %s: HTTP %d %s (%v)", asked.Subject.CommonName, code, body, err)
	}
	defer func() { _, _, _ = c.lbAdmin.Do(http.MethodDelete, csrs+"/"+name, nil) }()
	var decided struct {
		Status struct {
			Conditions []struct{ Type, Message string }
		}
	}
	took, err := c.waitFor(name+" decided", time.Minute, func() error {
		code, body, err := c.lbAdmin.Do(http.MethodGet, csrs+"/"+name, nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("HTTP %d %s (%v)", code, body, err)
		}
		if err := json.Unmarshal([]byte(body), &decided); err != nil {
			return err
		}
		if len(decided.Status.Conditions) == 0 {
			return errors.New("still pending")
		}
		return nil
	})
	if err != nil {
		return "", took, err
	}
	if d := decided.Status.Conditions[0]; d.Type != "Denied" {
		return "", took, fmt.Errorf("%s, not denied: %s", d.Type, d.Message)
	}
	return decided.Status.Conditions[0].Message, took, nil
}
