package bootstrap

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

// renewalNode is a control-plane node's PKI as kubeadm makes it, from the
// pinned kubeadm itself (--rootfs: a folder standing for the node's
// root), with the rendered init configuration at validity: what
// control-plane-cert-renewal.sh finds on a node.
type renewalNode struct {
	root, kubeadm, config string
}

func newRenewalNode(t *testing.T, validity time.Duration) renewalNode {
	t.Helper()
	if os.Geteuid() != 0 {
		tools.Unavailable(t, "kubeadm --rootfs chroots, so it needs root")
	}
	real, err := tools.Path("kubeadm")
	if err != nil {
		tools.Unavailable(t, err.Error())
	}
	n := renewalNode{root: t.TempDir(), config: "/kubeadm-init.yaml"}
	c := testControlPlane()
	c.CertificateValidity = validity
	init, err := c.KubeadmInit()
	if err != nil {
		t.Fatal(err)
	}
	init = strings.ReplaceAll(init, BootstrapTokenPlaceholder, "abcdef.0123456789abcdef")
	if err := os.WriteFile(filepath.Join(n.root, n.config), []byte(init), 0o600); err != nil {
		t.Fatal(err)
	}
	// kubeadm as the script runs it, on this folder as the node's root.
	n.kubeadm = filepath.Join(t.TempDir(), "kubeadm")
	if err := os.WriteFile(n.kubeadm, []byte("#!/bin/sh\nexec "+real+` "$@" --rootfs `+n.root+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, phase := range [][]string{{"certs", "ca"}, {"certs", "front-proxy-ca"}, {"certs", "apiserver"}, {"certs", "apiserver-kubelet-client"},
		{"certs", "front-proxy-client"}, {"kubeconfig", "all"}} {
		if out, err := exec.Command(n.kubeadm, append(append([]string{"init", "phase"}, phase...), "--config", n.config)...).CombinedOutput(); err != nil {
			t.Fatalf("kubeadm init phase %v: %v\n%s", phase, err, out)
		}
	}
	return n
}

// serial is the API server certificate's serial number: a new one after
// a renewal.
func (n renewalNode) serial(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.root, KubernetesPKIDir, "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}

// renewal is what one run of control-plane-cert-renewal.sh did.
type renewal struct {
	code int
	log  string
	// days left it sent.
	days float64
	// order the components came back in.
	order []string
	// apiServerEtcdCert is the etcd client certificate on disk when the
	// API server came back.
	apiServerEtcdCert string
	// leaseWhenBack is who held the API server restart Lease when the API
	// server came back, and leaseAfter who holds it after the run.
	leaseWhenBack, leaseAfter string
}

// renew runs control-plane-cert-renewal.sh once with renewBefore, against
// the node, fake static pods (a component runs while its manifest is in
// the folder), a fake aws and IMDS, and a fake kubectl holding the API
// server restart Lease. The node's secret holds etcdCert, and reissued
// (if any) from when the controller-manager is restarted on, as a `pulumi
// up` during the run would. The node is cp-a; otherHolder, if any, holds
// the Lease at first, for the run's first two sleeps.
func (n renewalNode) renew(t *testing.T, renewBefore time.Duration, etcdCert, reissued []byte, otherHolder string) renewal {
	t.Helper()
	dir := t.TempDir()
	lease := filepath.Join(dir, "lease")
	if otherHolder != "" {
		if err := os.WriteFile(lease, []byte(otherHolder+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, cert := range map[string][]byte{"secret.json": etcdCert, "reissued.json": reissued} {
		if cert == nil {
			continue
		}
		secret, err := json.Marshal(map[string]string{PKISecretPrefix + "apiserver-etcd-client.crt": string(cert)})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), secret, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	manifests := filepath.Join(dir, "manifests")
	if err := os.Mkdir(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if err := os.WriteFile(filepath.Join(manifests, c+".yaml"), []byte("kind: Pod\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	metrics, healthy := filepath.Join(dir, "metrics"), filepath.Join(dir, "healthy")
	fakes := map[string]string{
		"kubeadm": "#!/bin/sh\nexec " + n.kubeadm + ` "$@"` + "\n",
		// pgrep -f "^<component> ": running while its manifest is there.
		"pgrep": `#!/bin/bash
c=${2#^}; c=${c% }
[ -f "` + manifests + `/$c.yaml" ]
`,
		// IMDS answers; a health URL is healthy while its component's
		// manifest is there (the port says which).
		"curl": `#!/bin/bash
url=${*: -1}
case $url in
  */api/token) echo token ;;
  */meta-data/instance-id) echo i-0abc ;;
  *:6443/*) c=kube-apiserver; cp "$ETCD_CERT_FILE" "` + dir + `/apiserver-etcd-cert"; cat "` + lease + `" >"` + dir + `/lease-when-back" ;;
  *:10257/*) c=kube-controller-manager; [ ! -f "` + dir + `/reissued.json" ] || mv "` + dir + `/reissued.json" "` + dir + `/secret.json" ;;
  *:10259/*) c=kube-scheduler ;;
esac
if [ -n "$c" ]; then
  [ -f "` + manifests + `/$c.yaml" ] || exit 7
  grep -qx "$c" "` + healthy + `" 2>/dev/null || echo "$c" >>"` + healthy + `"
fi
`,
		// The Lease file holds its holder; created once, as the API does, and
		// missing until then.
		"kubectl": `#!/bin/bash
case "$*" in
  *"create -f -"*) cat >/dev/null; [ ! -e "` + lease + `" ] && echo cp-a >"` + lease + `" ;;
  *"get lease"*) [ -e "` + lease + `" ] || exit 0; printf '{"spec": {"holderIdentity": "%s", "renewTime": "%s", "leaseDurationSeconds": 600}}' "$(cat "` + lease + `")" "$(date -u +%FT%TZ)" ;;
  *"replace -f -"*) jq -r .spec.holderIdentity >"` + lease + `" ;;
  *) exit 1 ;;
esac
`,
		"hostname": "#!/bin/sh\necho cp-a\n",
		// The other holder lets the Lease go at the second sleep.
		"sleep": `#!/bin/bash
echo >>"` + dir + `/sleeps"
[ "$(wc -l <"` + dir + `/sleeps")" -lt 2 ] || [ "$(cat "` + lease + `")" = cp-a ] || echo >"` + lease + `"
`,
		// The node's secret holds the etcd client certificate.
		"aws": `#!/bin/sh
case "$1 $2" in
  "secretsmanager get-secret-value") cat "` + dir + `/secret.json" ;;
  *) echo "$*" >>"` + metrics + `" ;;
esac
`,
	}
	bin := scriptDir(t, fakes, "control-plane-cert-renewal.sh", "node-common.sh", "credentials.sh", "imds.sh", "lease.sh")
	cmd := exec.Command("bash", filepath.Join(bin, "control-plane-cert-renewal.sh"))
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "ROLE=control-plane", "ZONE=eu-west-1a", "KUBEADM_INIT_CONFIG=" + n.config,
		"RENEW_BEFORE_SECONDS=" + strconv.Itoa(int(renewBefore.Seconds())), "RENEW_SPREAD_SECONDS=0", "STATIC_POD_DIR=" + manifests,
		"LOCAL_READY_URL=https://127.0.0.1:6443/readyz", "CONTROLLER_MANAGER_HEALTH_URL=https://127.0.0.1:10257/healthz",
		"SCHEDULER_HEALTH_URL=https://127.0.0.1:10259/healthz", "ADMIN_KUBECONFIG=/dev/null",
		"RESTART_LEASE=" + APIServerRestartLease, "RESTART_LEASE_SECONDS=600", "RESTART_LEASE_WAIT_SECONDS=900", "ETCD_CERT_FILE=" + filepath.Join(dir, "pki", "apiserver-etcd-client.crt"),
		"SECRET_ID=c1-control-plane", "PKI_SECRET_PREFIX=" + PKISecretPrefix, "KUBERNETES_PKI_DIR=" + filepath.Join(dir, "pki"), "SECRETS_DIR=" + filepath.Join(dir, "secrets"), "KUBELET_CERT_DIR=" + filepath.Join(dir, "kubelet"),
		"CERT_DAYS_LEFT_METRIC=" + CertDaysLeftMetric, "CERT_RENEWAL_FAILED_METRIC=" + CertRenewalFailedMetric,
		"BOOTSTRAP_METRIC_NAMESPACE=kubeha", "BOOTSTRAP_METRIC_DIMENSIONS=Cluster=c1"}
	r := renewal{days: -1}
	r.code, r.log = runScript(t, cmd)
	sent, _ := os.ReadFile(metrics)
	if f := strings.Fields(string(sent)); len(f) > 0 {
		for i, word := range f {
			if word == "--value" && i+1 < len(f) {
				r.days, _ = strconv.ParseFloat(f[i+1], 64)
			}
		}
	}
	back, _ := os.ReadFile(healthy)
	r.order = strings.Fields(string(back))
	started, _ := os.ReadFile(filepath.Join(dir, "apiserver-etcd-cert"))
	r.apiServerEtcdCert = string(started)
	whenBack, _ := os.ReadFile(filepath.Join(dir, "lease-when-back"))
	after, _ := os.ReadFile(lease)
	r.leaseWhenBack, r.leaseAfter = strings.TrimSpace(string(whenBack)), strings.TrimSpace(string(after))
	return r
}

// TestCertRenewalWithTheRealKubeadm: with certificates of a 20-minute
// validity, a node whose threshold is an hour renews them (the pinned
// kubeadm's `certs renew all`: a new API server certificate) and restarts
// the scheduler, then the controller-manager, then the API server, each
// healthy before the next; one whose threshold is a minute does not.
// It restarts the API server only under the restart Lease, waiting while
// another node holds it, and lets it go once the API server is back.
// Either way it sends the days left on its shortest-lived certificate,
// here the etcd client certificate when that expires first, as re-read
// from the node's secret.
func TestCertRenewalWithTheRealKubeadm(t *testing.T) {
	n := newRenewalNode(t, 20*time.Minute)
	ca, err := pki.Issue(pki.EtcdCA("c1"))
	if err != nil {
		t.Fatal(err)
	}
	longer, err := ca.Sign(pki.Spec{CommonName: "kube-apiserver-etcd-client", Usages: []pki.Usage{pki.ClientAuth}, ValidityHours: 24})
	if err != nil {
		t.Fatal(err)
	}

	before := n.serial(t)
	r := n.renew(t, time.Minute, longer.CertPEM, nil, "")
	if r.code != 0 || n.serial(t) != before || len(r.order) != 0 {
		t.Fatalf("20 minutes left, renewing under 1: exit %d, serial %s (was %s), restarted %v:\n%s", r.code, n.serial(t), before, r.order, r.log)
	}
	if r.days <= 0 || r.days > 20.0/1440+0.01 {
		t.Errorf("days left sent: %v, want about %.3f (kubeadm's 20 minutes, not the etcd client's day)", r.days, 20.0/1440)
	}

	r = n.renew(t, time.Hour, longer.CertPEM, nil, "")
	if r.code != 0 || n.serial(t) == before || strings.Join(r.order, ",") != "kube-scheduler,kube-controller-manager,kube-apiserver" {
		t.Fatalf("20 minutes left, renewing under an hour: exit %d, serial %s (was %s), back in order %v:\n%s", r.code, n.serial(t), before, r.order, r.log)
	}
	if !strings.Contains(r.log, "renewing") || r.days <= 0.013 {
		t.Errorf("after renewal: days left %v, want a fresh 20 minutes (0.0139):\n%s", r.days, r.log)
	}
	if r.leaseWhenBack != "cp-a" || r.leaseAfter != "" {
		t.Errorf("the API server restart Lease: held by %q when the API server came back, by %q after; want cp-a, then nobody:\n%s", r.leaseWhenBack, r.leaseAfter, r.log)
	}

	// Another node restarting its API server: this one waits for the
	// Lease, and restarts only once it holds it.
	r = n.renew(t, time.Hour, longer.CertPEM, nil, "cp-b")
	if r.code != 0 || !strings.Contains(r.log, "cp-b holds the lease kubeha-api-server-restart") || r.leaseWhenBack != "cp-a" || r.leaseAfter != "" {
		t.Errorf("with cp-b holding the Lease: exit %d, the Lease held by %q when the API server came back, by %q after; want cp-a, then nobody:\n%s",
			r.code, r.leaseWhenBack, r.leaseAfter, r.log)
	}

	// The etcd client certificate re-issued while the run restarts the
	// other components: the API server starts with the new one, not with
	// what the run read first, which may have expired by then.
	reissued, err := ca.Sign(pki.Spec{CommonName: "kube-apiserver-etcd-client", Usages: []pki.Usage{pki.ClientAuth}, ValidityHours: 48})
	if err != nil {
		t.Fatal(err)
	}
	if r = n.renew(t, time.Hour, longer.CertPEM, reissued.CertPEM, ""); r.code != 0 || r.apiServerEtcdCert != string(reissued.CertPEM) {
		t.Errorf("re-issued during the run: exit %d, the API server started with the new etcd client certificate: %v:\n%s",
			r.code, r.apiServerEtcdCert == string(reissued.CertPEM), r.log)
	}

	// An etcd client certificate expiring first, as the node's secret
	// holds it, is what the metric says.
	soon, err := ca.Sign(pki.Spec{CommonName: "kube-apiserver-etcd-client", Usages: []pki.Usage{pki.ClientAuth}, ValidityHours: 0})
	if err != nil {
		t.Fatal(err)
	}
	if r = n.renew(t, time.Minute, soon.CertPEM, nil, ""); r.days > 0.005 {
		t.Errorf("with the etcd client certificate expiring now: days left %v, want about 0:\n%s", r.days, r.log)
	}
}

// TestEtcdCertRefreshRewritesOnlyWhatChanged: an etcd node's refresh
// writes the certificates its secret now holds, each in one rename and
// owner-only, leaves unchanged files alone, and reports the days left on
// the new ones; when the secret cannot be read it changes nothing and
// counts a failure.
func TestEtcdCertRefreshRewritesOnlyWhatChanged(t *testing.T) {
	ca, err := pki.Issue(pki.EtcdCA("c1"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := ca.Sign(pki.EtcdServer("etcd-a.c1.internal"))
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := ca.Resign(string(old.CertPEM), 36*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pkiDir, metrics, secret := filepath.Join(dir, "pki"), filepath.Join(dir, "metrics"), filepath.Join(dir, "secret.json")
	if err := os.Mkdir(pkiDir, 0o700); err != nil {
		t.Fatal(err)
	}
	onDisk := map[string]string{"ca.crt": string(ca.CertPEM), "server.crt": string(old.CertPEM), "server.key": string(old.KeyPEM),
		"peer.crt": string(old.CertPEM), "peer.key": string(old.KeyPEM)}
	for name, content := range onDisk {
		if err := os.WriteFile(filepath.Join(pkiDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caBefore, err := os.Stat(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	inSecret := maps.Clone(onDisk)
	inSecret["server.crt"], inSecret["peer.crt"] = renewed, renewed
	data, err := json.Marshal(inSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, data, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() (int, string, string) {
		t.Helper()
		_ = os.Remove(metrics)
		bin := scriptDir(t, map[string]string{"aws": `#!/bin/sh
case "$1 $2" in
  "secretsmanager get-secret-value") cat "` + secret + `" ;;
  *) echo "$*" >>"` + metrics + `" ;;
esac
`}, "etcd-cert-refresh.sh", "etcd-common.sh", "credentials.sh")
		cmd := exec.Command("bash", filepath.Join(bin, "etcd-cert-refresh.sh"))
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "MEMBER_NAME=etcd-a", "SECRET_ID=c1-etcd-a", "PKI_DIR=" + pkiDir,
			"ETCDCTL_CERT=" + filepath.Join(pkiDir, "server.crt"), "PEER_CERT=" + filepath.Join(pkiDir, "peer.crt"),
			"CERT_DAYS_LEFT_METRIC=" + CertDaysLeftMetric, "CERT_RENEWAL_FAILED_METRIC=" + CertRenewalFailedMetric,
			"BOOTSTRAP_METRIC_NAMESPACE=kubeha", "BOOTSTRAP_METRIC_DIMENSIONS=Cluster=c1"}
		code, out := runScript(t, cmd)
		sent, _ := os.ReadFile(metrics)
		return code, out, string(sent)
	}

	code, log, sent := run()
	if code != 0 || strings.Count(log, "wrote ") != 2 || !strings.Contains(log, "wrote "+filepath.Join(pkiDir, "server.crt")) ||
		!strings.Contains(log, "wrote "+filepath.Join(pkiDir, "peer.crt")) {
		t.Fatalf("exit %d, want 0 and server.crt and peer.crt written, nothing else:\n%s", code, log)
	}
	for _, name := range []string{"server.crt", "peer.crt"} {
		got, err := os.ReadFile(filepath.Join(pkiDir, name))
		if err != nil || string(got) != renewed {
			t.Errorf("%s is not the secret's new certificate (%v)", name, err)
		}
	}
	caAfter, err := os.Stat(filepath.Join(pkiDir, "ca.crt"))
	if err != nil || !os.SameFile(caBefore, caAfter) {
		t.Errorf("the unchanged ca.crt was rewritten (%v)", err)
	}
	entries, _ := os.ReadDir(pkiDir)
	for _, e := range entries {
		info, _ := e.Info()
		if _, known := onDisk[e.Name()]; !known || info.Mode().Perm() != 0o600 {
			t.Errorf("%s (mode %v) in the PKI folder, want only the secret's files, owner-only", e.Name(), info.Mode().Perm())
		}
	}
	// The new certificates' 36 hours, less the run so far: up to 86 s (0.001
	// days) on a loaded machine.
	prefix := "--metric-name " + CertDaysLeftMetric + " --dimensions Cluster=c1 --value "
	_, after, found := strings.Cut(sent, prefix)
	days, err := strconv.ParseFloat(strings.Fields(after + " x")[0], 64)
	if !found || err != nil || days < 1.499 || days > 1.5 {
		t.Errorf("metrics sent %q, want %s of about 1.5 days (the new certificates' 36 hours)", sent, CertDaysLeftMetric)
	}

	if code, log, _ := run(); code != 0 || strings.Contains(log, "wrote ") {
		t.Errorf("a second run: exit %d, want 0 and nothing written:\n%s", code, log)
	}

	if err := os.WriteFile(secret, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, log, sent = run()
	if code == 0 || !strings.Contains(sent, "--metric-name "+CertRenewalFailedMetric) {
		t.Errorf("an unreadable secret: exit %d, metrics %q; want a failure counted:\n%s", code, sent, log)
	}
	if got, _ := os.ReadFile(filepath.Join(pkiDir, "server.crt")); string(got) != renewed {
		t.Error("an unreadable secret changed server.crt")
	}
}
