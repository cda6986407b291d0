package bootstrap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// servingRequest is a certificate request as a kubelet makes one for
// serving (pkg/kubelet/certificate): subject O=system:nodes,
// CN=system:node:<cn>, with the node's names and addresses.
func servingRequest(t *testing.T, cn string, names []string, ips ...string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"system:nodes"}, CommonName: "system:node:" + cn}, DNSNames: names}
	for _, ip := range ips {
		template.IPAddresses = append(template.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, template, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

type csrCase struct {
	name, user, signer, request string
	usages                      []string
	decided                     bool
}

func (c csrCase) object() map[string]any {
	groups := []string{"system:authenticated"}
	if strings.HasPrefix(c.user, "system:node:") {
		groups = append(groups, "system:nodes")
	}
	signer, usages := c.signer, c.usages
	if signer == "" {
		signer = "kubernetes.io/kubelet-serving"
	}
	if usages == nil {
		usages = []string{"digital signature", "server auth"}
	}
	o := map[string]any{"metadata": map[string]any{"name": c.name},
		"spec": map[string]any{"username": c.user, "groups": groups, "signerName": signer, "usages": usages,
			"request": []byte(c.request)}, "status": map[string]any{}}
	if c.decided {
		o["status"] = map[string]any{"conditions": []any{map[string]any{"type": "Approved", "status": "True"}}}
	}
	return o
}

// runCSRApprover runs control-plane-csr-approver.sh on requests, with a
// fake kubectl over them and a fake aws whose running instances are node
// name -> private IP (awsFails: every EC2 call fails). It returns the exit
// code, the decisions ("<request> <type> <message>" lines), the metrics
// sent and the log.
func runCSRApprover(t *testing.T, instances map[string]string, awsFails bool, requests ...csrCase) (int, []string, string, string) {
	t.Helper()
	dir := t.TempDir()
	var items []any
	for _, r := range requests {
		items = append(items, r.object())
	}
	list, _ := json.Marshal(map[string]any{"items": items})
	known, _ := json.Marshal(instances)
	decisions, metrics := filepath.Join(dir, "decisions"), filepath.Join(dir, "metrics")
	files := map[string]string{
		"csrs.json":      string(list),
		"instances.json": string(known),
		// get csr [NAME] -o json|jsonpath, and replace --raw .../NAME/approval
		// recording the condition set.
		"kubectl": `#!/bin/bash
set -e
d=$(dirname "$0")
[ "$1 $3 $5" = "--kubeconfig --server --tls-server-name" ] || { echo "fake kubectl: not the local API server: $*" >&2; exit 1; }
shift 6
case "$1 $2" in
  "get csr")
    if [ "$3" = -o ]; then cat "$d/csrs.json"; else jq --arg n "$3" '.items[] | select(.metadata.name == $n)' "$d/csrs.json"; fi ;;
  "replace --raw")
    jq -r '[.metadata.name, .status.conditions[0].type, .status.conditions[0].message] | join(" ")' >>"` + decisions + `"
    [ "$3" = "/apis/certificates.k8s.io/v1/certificatesigningrequests/$(tail -1 "` + decisions + `" | cut -d' ' -f1)/approval" ] ;;
  *) echo "fake kubectl: $*" >&2; exit 1 ;;
esac
`,
		// ec2 describe-instances by private-dns-name, running, tagged for
		// cluster c1 (any other filter is an error), its instances listed
		// as the script's --query does; metrics.
		"aws": `#!/bin/bash
d=$(dirname "$0")
[ -z "$AWS_FAILS" ] || [ "$1" != ec2 ] || { echo "aws: throttled" >&2; exit 255; }
case "$1 $2" in
  "ec2 describe-instances")
    [[ " $* " == *" --query Reservations[].Instances[] "* ]] || exit 252
    [[ " $* " == *" Name=instance-state-name,Values=running Name=tag:kubernetes.io/cluster/c1,Values=owned "* ]] || exit 252
    name=$(grep -o 'Name=private-dns-name,Values=[^ ]*' <<<"$*" | cut -d= -f3)
    jq --arg n "$name" '[to_entries[] | select(.key == $n) | {InstanceId: ("i-" + .key), PrivateDnsName: .key, PrivateIpAddress: .value}]' "$d/instances.json" ;;
  "cloudwatch put-metric-data") echo "$*" >>"` + metrics + `" ;;
  *) exit 1 ;;
esac
`,
	}
	bin := scriptDir(t, files, "control-plane-csr-approver.sh", "node-common.sh")
	cmd := exec.Command("bash", filepath.Join(bin, "control-plane-csr-approver.sh"))
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "ROLE=control-plane", "ZONE=eu-west-1a", "CLUSTER_NAME=c1",
		"ADMIN_KUBECONFIG=/dev/null", "LOCAL_API_URL=https://127.0.0.1:6443", "API_ENDPOINT=api.c1", "CSR_APPROVER_FAILED_METRIC=" + CSRApproverFailedMetric,
		"BOOTSTRAP_METRIC_NAMESPACE=kubeha", "BOOTSTRAP_METRIC_DIMENSIONS=Cluster=c1"}
	if awsFails {
		cmd.Env = append(cmd.Env, "AWS_FAILS=1")
	}
	code, out := runScript(t, cmd)
	decided, _ := os.ReadFile(decisions)
	sent, _ := os.ReadFile(metrics)
	var lines []string
	if s := strings.TrimSpace(string(decided)); s != "" {
		lines = strings.Split(s, "\n")
	}
	return code, lines, string(sent), out
}

// TestCSRApproverApprovesOnlyANodesOwnServingCertificate runs the real
// approver on kubelet-made requests: a node's own is approved; one naming
// another node, an address or name not its instance's, client usages, a
// requester that is no node, or a node with no instance is denied;
// decided requests and other signers are left alone; when EC2 cannot be
// asked, nothing is decided, and the run fails and counts
// CSRApproverFailedMetric.
func TestCSRApproverApprovesOnlyANodesOwnServingCertificate(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("the approver reads requests with openssl, which every node has: install openssl")
	}
	own := servingRequest(t, "ip-10-0-1-5", []string{"ip-10-0-1-5"}, "10.0.1.5")
	instances := map[string]string{"ip-10-0-1-5": "10.0.1.5", "ip-10-0-2-7": "10.0.2.7"}
	requests := []csrCase{
		{name: "own", user: "system:node:ip-10-0-1-5", request: own},
		{name: "own-key-encipherment", user: "system:node:ip-10-0-1-5", request: own, usages: []string{"key encipherment", "digital signature", "server auth"}},
		{name: "other-ip", user: "system:node:ip-10-0-1-5", request: servingRequest(t, "ip-10-0-1-5", []string{"ip-10-0-1-5"}, "10.0.1.5", "10.0.2.7")},
		{name: "other-dns", user: "system:node:ip-10-0-1-5", request: servingRequest(t, "ip-10-0-1-5", []string{"ip-10-0-1-5", "kubernetes.default"}, "10.0.1.5")},
		{name: "other-node", user: "system:node:ip-10-0-1-5", request: servingRequest(t, "ip-10-0-2-7", []string{"ip-10-0-2-7"}, "10.0.2.7")},
		{name: "client-usage", user: "system:node:ip-10-0-1-5", request: own, usages: []string{"digital signature", "server auth", "client auth"}},
		{name: "not-a-node", user: "system:bootstrap:abcdef", request: own},
		{name: "no-instance", user: "system:node:ip-10-0-3-9", request: servingRequest(t, "ip-10-0-3-9", []string{"ip-10-0-3-9"}, "10.0.3.9")},
		{name: "decided", user: "system:node:ip-10-0-1-5", request: own, decided: true},
		{name: "client-signer", user: "system:node:ip-10-0-1-5", request: own, signer: "kubernetes.io/kube-apiserver-client-kubelet"},
	}
	code, decisions, metrics, log := runCSRApprover(t, instances, false, requests...)
	if code != 0 || metrics != "" {
		t.Fatalf("exit %d, metrics %q:\n%s", code, metrics, log)
	}
	want := map[string]string{"own": "Approved", "own-key-encipherment": "Approved",
		"other-ip": "Denied IP Address:10.0.2.7 is not an address of ip-10-0-1-5", "other-dns": "Denied DNS:kubernetes.default is not an address of ip-10-0-1-5",
		"other-node":   "Denied its subject is not system:node:ip-10-0-1-5's",
		"client-usage": "Denied usages", "not-a-node": "Denied requested by system:bootstrap:abcdef, not by a node",
		"no-instance": "Denied no running instance of cluster c1 is named ip-10-0-3-9"}
	if len(decisions) != len(want) {
		t.Errorf("%d decisions, want %d:\n%s", len(decisions), len(want), strings.Join(decisions, "\n"))
	}
	for _, d := range decisions {
		name, decision, _ := strings.Cut(d, " ")
		if w, ok := want[name]; !ok || !strings.HasPrefix(decision, w) {
			t.Errorf("%s: %q, want %q", name, decision, w)
		}
	}

	code, decisions, metrics, log = runCSRApprover(t, instances, true, requests[0])
	if code == 0 || len(decisions) != 0 || !strings.Contains(metrics, "--metric-name "+CSRApproverFailedMetric) || !strings.Contains(log, "left pending") {
		t.Errorf("with EC2 unreachable: exit %d, decisions %v, metrics %q:\n%s", code, decisions, metrics, log)
	}
}
