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
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/kubeha/kubeha/internal/awsdouble"
	"maps"
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
	old, err := lab.DeclaredSecret(c.stack.declared, controlPlaneKey)
	if err != nil {
		return r, err
	}
	raw, generation, err := raiseTokenGeneration(c.stack.raw)
	if err != nil {
		return r, err
	}
	r.Generation = generation
	newer, err := declare(raw, c.stack.rootfs)
	if err != nil {
		return r, err
	}
	rotated, err := lab.DeclaredSecret(newer, controlPlaneKey)
	if err != nil {
		return r, err
	}
	oldToken, newToken := old["bootstrap-token"], rotated["bootstrap-token"]
	oldID, _, _ := strings.Cut(oldToken, ".")
	newID, _, _ := strings.Cut(newToken, ".")
	if oldID == newID {
		return r, fmt.Errorf("generation %d kept the token's ID %s", generation, oldID)
	}
	if err := c.cloud.SetSecretEntry(c.stack.declared, controlPlaneKey, "bootstrap-token", newToken); err != nil {
		return r, err
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

// tokenIDs are the IDs of the cluster's own bootstrap tokens.
func (c *cluster) tokenIDs() ([]string, error) {
	code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/namespaces/kube-system/secrets?fieldSelector=type%3Dbootstrap.kubernetes.io%2Ftoken", nil)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("listing bootstrap tokens: HTTP %d %s (%v)", code, body, err)
	}
	var list struct {
		Items []struct {
			Data map[string][]byte
		}
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, err
	}
	var ids []string
	for _, item := range list.Items {
		// Workers' own tokens (a worker booted alongside) are not the
		// cluster's.
		if string(item.Data["auth-extra-groups"]) != bootstrap.WorkerBootstrapGroup {
			ids = append(ids, string(item.Data["token-id"]))
		}
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

// certificateDaysLeft waits until every control-plane node's renewal
// timer and every etcd node's refresh timer has reported the days left on
// its shortest-lived certificate, and returns each node's first report.
func (c *cluster) certificateDaysLeft() (map[string]float64, error) {
	days := map[string]float64{}
	_, err := c.waitFor("every control-plane and etcd node reporting its certificates' days left", 3*time.Minute, func() error {
		for _, m := range c.cloud.Metrics() {
			for _, g := range append(append([]*lab.NodeGroup{}, c.nodes...), c.members...) {
				_, seen := days[g.Name]
				if m.Name == bootstrap.CertDaysLeftMetric && g.Instance != nil && m.Instance == g.Instance.ID && !seen {
					days[g.Name] = m.Value
				}
			}
		}
		if len(days) < len(c.nodes)+len(c.members) {
			return fmt.Errorf("reports from %v only", slices.Sorted(maps.Keys(days)))
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
		// Workers boot beside it: a request may wait on a busy node.
		if _, err := c.waitFor("the API server to "+nodeName(i)+"'s kubelet", 30*time.Second, func() error {
			if code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/nodes/"+nodeName(i)+"/proxy/healthz", nil); err != nil || code != http.StatusOK || body != "ok" {
				return fmt.Errorf("HTTP %d %s (%v), want 200 ok", code, body, err)
			}
			return nil
		}); err != nil {
			return r, fmt.Errorf("%w\n%s", err, n.UnitLog("kubelet.service"))
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

// decision is how a certificate request was decided: the condition's type
// and message, or the API server's refusal to create it; with the
// certificate issued, if approved.
type decision struct {
	Type        string `json:"type"`
	Message     string `json:"message"`
	Certificate string `json:"-"`
}

// askCertificate posts request name for asked, for signer with usages, as
// api, and waits until it is decided, and if approved, signed.
func (c *cluster) askCertificate(api *lab.API, name, signer string, usages []string, asked x509.CertificateRequest) (decision, time.Duration, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return decision{}, 0, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &asked, key)
	if err != nil {
		return decision{}, 0, err
	}
	request := map[string]any{"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": map[string]any{"name": name},
		"spec": map[string]any{"signerName": signer, "usages": usages,
			"request": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})}}
	code, body, err := api.Do(http.MethodPost, csrs, request)
	if err == nil && code == http.StatusForbidden {
		// The API server's own admission refuses a node's request naming
		// another node, before any approver sees it.
		var status struct{ Message string }
		err := json.Unmarshal([]byte(body), &status)
		return decision{Type: "Refused", Message: "refused by the API server: " + status.Message}, 0, err
	}
	if err != nil || code != http.StatusCreated {
		return decision{}, 0, fmt.Errorf("creating it as %s: HTTP %d %s (%v)", asked.Subject.CommonName, code, body, err)
	}
	defer func() { _, _, _ = c.lbAdmin.Do(http.MethodDelete, csrs+"/"+name, nil) }()
	var d decision
	// The approver's timer decides it on its next run, which calls EC2 and
	// may take a while on a node where workers boot beside it.
	took, err := c.waitFor(name+" decided", 2*time.Minute, func() error {
		code, body, err := c.lbAdmin.Do(http.MethodGet, csrs+"/"+name, nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("HTTP %d %s (%v)", code, body, err)
		}
		var got struct {
			Status struct {
				Conditions  []struct{ Type, Message string }
				Certificate []byte
			}
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			return err
		}
		if len(got.Status.Conditions) == 0 {
			return errors.New("still pending")
		}
		d = decision{Type: got.Status.Conditions[0].Type, Message: got.Status.Conditions[0].Message, Certificate: string(got.Status.Certificate)}
		if d.Type == "Approved" && d.Certificate == "" {
			return errors.New("approved, not signed yet")
		}
		return nil
	})
	return d, took, err
}

// askServingCertificate is askCertificate for a kubelet's serving
// certificate, which must be denied: it returns why.
func (c *cluster) askServingCertificate(node *lab.API, name string, asked x509.CertificateRequest) (string, time.Duration, error) {
	d, took, err := c.askCertificate(node, name, "kubernetes.io/kubelet-serving", []string{"digital signature", "server auth"}, asked)
	if err == nil && d.Type != "Denied" && d.Type != "Refused" {
		err = fmt.Errorf("%s, not denied: %s", d.Type, d.Message)
	}
	return d.Message, took, err
}

// WorkerJoin is what a worker's own join token got from the cluster.
type WorkerJoin struct {
	// MintSeconds is from the worker's handing its token over until the
	// API servers authenticated it, as User in Groups.
	MintSeconds float64  `json:"mintSeconds"`
	User        string   `json:"user"`
	Groups      []string `json:"groups"`
	// Reads are what kubeadm join reads with the token: HTTP status by
	// path (404 for its Node, which does not exist yet, is allowed); a
	// Secret must be refused.
	Reads map[string]int `json:"reads"`
	// Signed says cluster-info carries the token's signature, which
	// kubeadm join's discovery checks.
	Signed bool `json:"signed"`
	// OtherNode is the decision on its kubelet client certificate for
	// cp-a; OwnNode on its own name's, signed by the cluster CA.
	OtherNode decision `json:"otherNode"`
	OwnNode   string   `json:"ownNode"`
}

// checkWorkerJoin plays a worker that hands its own join token over, as
// worker-join-token.sh does (the IAM policy letting it write under its own
// user ID only is checked by tests/policy_test.go), from an instance of
// this cluster that EC2 knows, launching in zone a's worker group (the
// approver lists tokens only while one is), but no container runs: the
// control plane must make it a token of the workers' group, which can do
// what kubeadm join does and get a kubelet client certificate for the
// instance's own name only.
func (c *cluster) checkWorkerJoin() (WorkerJoin, error) {
	r := WorkerJoin{Reads: map[string]int{}}
	bucket, err := lab.DeclaredBucket(c.stack.declared, "-assets")
	if err != nil {
		return r, err
	}
	worker := awsdouble.Instance{ID: "i-0feedc0ffee0worker", Zone: c.stack.zones[0], Region: c.stack.region, PrivateIP: zoneNet(0) + ".99",
		Hostname: "ip-" + strings.ReplaceAll(zoneNet(0), ".", "-") + "-99", Tags: map[string]string{"kubernetes.io/cluster/" + c.stack.clusterName: "owned"}}
	c.cloud.AddInstance(worker)
	c.cloud.JoinGroup(worker.ID, c.workers[0].Name, bootstrap.LaunchHook)
	defer c.cloud.TerminateInstance(worker.ID)
	secret := make([]byte, 11)
	if _, err := rand.Read(secret); err != nil {
		return r, err
	}
	token := hex.EncodeToString(secret)[:6] + "." + hex.EncodeToString(secret)[6:22]
	id, _, _ := strings.Cut(token, ".")
	defer func() {
		_, _, _ = c.lbAdmin.Do(http.MethodDelete, "/api/v1/namespaces/kube-system/secrets/bootstrap-token-"+id, nil)
	}()
	start := time.Now()
	if err := c.cloud.PutObject(bucket, bootstrap.NodeTokenPrefix+"AROAKUBEHAWORKERROLE:"+worker.ID, []byte(token+"\n")); err != nil {
		return r, err
	}
	api := c.lbAnonymous.WithToken(token)
	review := map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
	// The approver lists what workers hand over every 20 s once the
	// drainer (every 30 s) saw the worker launching, in runs that take
	// tens of seconds while nine nodes share the machine.
	if _, err := c.waitFor("the worker's token made", 3*time.Minute, func() error {
		code, body, err := api.Do(http.MethodPost, "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
		if err != nil || code != http.StatusCreated {
			return fmt.Errorf("HTTP %d %s (%v)", code, body, err)
		}
		var who struct {
			Status struct {
				UserInfo struct {
					Username string
					Groups   []string
				}
			}
		}
		err = json.Unmarshal([]byte(body), &who)
		r.User, r.Groups = who.Status.UserInfo.Username, who.Status.UserInfo.Groups
		return err
	}); err != nil {
		return r, fmt.Errorf("%w\n%s", err, c.nodes[0].UnitLog(bootstrap.CSRApproverUnit))
	}
	r.MintSeconds = time.Since(start).Seconds()
	// The approver deletes what was handed over once the token is made.
	if _, err := c.waitFor("the handed-over token taken from S3", 30*time.Second, func() error {
		if left, err := c.cloud.List(bucket, bootstrap.NodeTokenPrefix); err != nil || len(left) != 0 {
			return fmt.Errorf("left in S3: %v (%v)", left, err)
		}
		return nil
	}); err != nil {
		return r, err
	}
	if r.User != "system:bootstrap:"+id || !slices.Contains(r.Groups, bootstrap.WorkerBootstrapGroup) {
		return r, fmt.Errorf("the worker's token is %s in %v, want system:bootstrap:%s in %s", r.User, r.Groups, id, bootstrap.WorkerBootstrapGroup)
	}
	reads := map[string]int{
		"/api/v1/namespaces/kube-system/configmaps/kubeadm-config": http.StatusOK,
		"/api/v1/namespaces/kube-system/configmaps/kubelet-config": http.StatusOK,
		"/api/v1/nodes/" + worker.Hostname:                         http.StatusNotFound,
		"/api/v1/namespaces/kube-system/secrets":                   http.StatusForbidden,
	}
	for path, want := range reads {
		code, body, err := api.Do(http.MethodGet, path, nil)
		if err != nil || code != want {
			return r, fmt.Errorf("GET %s with the worker's token: HTTP %d %s (%v), want %d", path, code, body, err, want)
		}
		r.Reads[path] = code
	}
	if _, err := c.waitFor("cluster-info signed with the worker's token", 30*time.Second, func() error {
		code, body, err := c.lbAnonymous.Do(http.MethodGet, "/api/v1/namespaces/kube-public/configmaps/cluster-info", nil)
		if err != nil || code != http.StatusOK || !strings.Contains(body, "jws-kubeconfig-"+id) {
			return fmt.Errorf("HTTP %d (%v), no jws-kubeconfig-%s", code, err, id)
		}
		return nil
	}); err != nil {
		return r, err
	}
	r.Signed = true

	client, usages := "kubernetes.io/kube-apiserver-client-kubelet", []string{"digital signature", "client auth"}
	if r.OtherNode, _, err = c.askCertificate(api, "kubeha-rehearsal-worker-other-node", client, usages, x509.CertificateRequest{Subject: nodeSubject(nodeName(0))}); err != nil {
		return r, err
	}
	if r.OtherNode.Type != "Denied" {
		return r, fmt.Errorf("the worker's token asking for %s's client certificate: %+v, want denied", nodeName(0), r.OtherNode)
	}
	own, _, err := c.askCertificate(api, "kubeha-rehearsal-worker-own-node", client, usages, x509.CertificateRequest{Subject: nodeSubject(worker.Hostname)})
	if err != nil {
		return r, err
	}
	if own.Type != "Approved" {
		return r, fmt.Errorf("the worker's token asking for its own node's client certificate: %+v, want approved and signed", own)
	}
	cert, err := c.clientCertificate(own.Certificate)
	if err != nil {
		return r, fmt.Errorf("the worker's client certificate: %w", err)
	}
	r.OwnNode = cert.Subject.CommonName
	return r, nil
}

// clientCertificate is the client certificate in certPEM, once verified
// as signed by the cluster CA.
func (c *cluster) clientCertificate(certPEM string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.k8sCA.CertPEM)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return cert, err
}
