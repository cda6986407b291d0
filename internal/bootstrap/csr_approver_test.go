package bootstrap

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	// groups are the requester's; by default a node's or only
	// system:authenticated.
	groups []string
}

func (c csrCase) object() map[string]any {
	groups := []string{"system:authenticated"}
	if strings.HasPrefix(c.user, "system:node:") {
		groups = append(groups, "system:nodes")
	}
	if c.groups != nil {
		groups = c.groups
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

// approverWorld is what the approver finds: running instances (node name
// -> private IP; instance ID "i-<name>"), EC2 failing, the join tokens
// workers handed over (S3 key under the prefix -> content), and the
// bootstrap tokens the cluster holds (ID -> its instance label, "" for
// none).
// The approver runs on cp-a, the first Ready control-plane node by name,
// unless onSecondNode.
type approverWorld struct {
	instances    map[string]string
	awsFails     bool
	handedOver   map[string]string
	tokens       map[string]string
	onSecondNode bool
	// stateDir is the approver's own state across runs; a new folder if
	// empty. s3Fails makes every S3 call but the listing fail.
	stateDir string
	s3Fails  bool
	// joiningWorkers is the drainer's list of workers launching; none if
	// empty (the approver then lists the tokens, as when the drainer has
	// not written one).
	joiningWorkers string
}

// approverRun is what a run of the approver did: its exit code, its
// decisions ("<request> <type> <message>" lines), the metrics sent, its
// log, the bootstrap token Secrets it made, and the S3 keys left.
type approverRun struct {
	code           int
	decisions      []string
	metrics, log   string
	made           []map[string]any
	handedOverLeft []string
	// s3Lists counts its listings of the handed-over tokens.
	s3Lists int
}

// runCSRApprover runs control-plane-csr-approver.sh on requests, with a
// fake kubectl over them and the world's bootstrap tokens, and a fake aws
// over the world's instances and S3 objects.
func runCSRApprover(t *testing.T, world approverWorld, requests ...csrCase) approverRun {
	t.Helper()
	dir := t.TempDir()
	items := []any{}
	for _, r := range requests {
		items = append(items, r.object())
	}
	list, _ := json.Marshal(map[string]any{"items": items})
	known, _ := json.Marshal(world.instances)
	decisions, metrics, secrets, s3 := filepath.Join(dir, "decisions"), filepath.Join(dir, "metrics"), filepath.Join(dir, "secrets"), filepath.Join(dir, "s3")
	for _, d := range []string{secrets, s3} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for key, content := range world.handedOver {
		if err := os.WriteFile(filepath.Join(s3, key), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for id, instance := range world.tokens {
		secret := map[string]any{"metadata": map[string]any{"name": "bootstrap-token-" + id, "labels": map[string]string{}}}
		if instance != "" {
			secret["metadata"].(map[string]any)["labels"] = map[string]string{InstanceLabel: instance}
		}
		data, _ := json.Marshal(secret)
		if err := os.WriteFile(filepath.Join(secrets, "bootstrap-token-"+id), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"csrs.json":      string(list),
		"instances.json": string(known),
		// get csr [NAME] -o json|jsonpath, and replace --raw .../NAME/approval
		// recording the condition set; get secret and create over the
		// secrets folder (made ones also go to made.json).
		"kubectl": `#!/bin/bash
set -e
d=$(dirname "$0")
[ "$1 $3 $5" = "--kubeconfig --server --tls-server-name" ] || { echo "fake kubectl: not the local API server: $*" >&2; exit 1; }
shift 6
case "$1 $2 $3 $4" in
  "get nodes -o json")
    echo '{"items":[{"metadata":{"name":"cp-b","labels":{"` + ControlPlaneLabel + `":""}},"status":{"conditions":[{"type":"Ready","status":"True"}]}},
      {"metadata":{"name":"cp-a","labels":{"` + ControlPlaneLabel + `":""}},"status":{"conditions":[{"type":"Ready","status":"True"}]}}]}' ;;
  "get csr"*)
    if [ "$3" = -o ]; then cat "$d/csrs.json"; else jq --arg n "$3" '.items[] | select(.metadata.name == $n)' "$d/csrs.json"; fi ;;
  "replace --raw"*)
    jq -r '[.metadata.name, .status.conditions[0].type, .status.conditions[0].message] | join(" ")' >>"` + decisions + `"
    [ "$3" = "/apis/certificates.k8s.io/v1/certificatesigningrequests/$(tail -1 "` + decisions + `" | cut -d' ' -f1)/approval" ] ;;
  "-n kube-system get secret")
    [ "$6 $7 $8" = "--ignore-not-found -o json" ] || exit 1
    cat "` + secrets + `/$5" 2>/dev/null || true ;;
  "create -f - ")
    s=$(cat)
    f="` + secrets + `/$(jq -r .metadata.name <<<"$s")"
    [ ! -e "$f" ] || { echo "AlreadyExists" >&2; exit 1; }
    echo "$s" >"$f"
    echo "$s" >>"` + dir + `/made.json" ;;
  *) echo "fake kubectl: $*" >&2; exit 1 ;;
esac
`,
		// ec2 describe-instances by private-dns-name or instance-id,
		// running, tagged for cluster c1 (any other filter is an error),
		// its instances listed as the script's --query does; S3 ls, cp to
		// stdout and rm under the token prefix; metrics.
		"aws": `#!/bin/bash
d=$(dirname "$0")
[ -z "$AWS_FAILS" ] || [ "$1" != ec2 ] || { echo "aws: throttled" >&2; exit 255; }
[ -z "$S3_FAILS" ] || [ "$1 $2" = "s3 ls" ] || [ "$1" != s3 ] || { echo "aws: S3 down" >&2; exit 1; }
echo "$1 $2" >>"$d/calls"
case "$1 $2" in
  "ec2 describe-instances")
    [[ " $* " == *" --query Reservations[].Instances[] "* ]] || exit 252
    [[ " $* " == *" Name=instance-state-name,Values=running Name=tag:kubernetes.io/cluster/c1,Values=owned "* ]] || exit 252
    filter=$(grep -o 'Name=\(private-dns-name\|instance-id\),Values=[^ ]*' <<<"$*")
    value=${filter##*=}
    [ "${filter%%,*}" = Name=private-dns-name ] || value=${value#i-}
    jq --arg n "$value" '[to_entries[] | select(.key == $n) | {InstanceId: ("i-" + .key), PrivateDnsName: .key, PrivateIpAddress: .value}]' "$d/instances.json" ;;
  "s3 ls")
    [ "$3" = "$NODE_TOKEN_URL" ] || exit 255
    [ -n "$(ls "` + s3 + `")" ] || exit 1
    for f in "` + s3 + `"/*; do echo "2026-12-04 04:00:00 40 $(basename "$f")"; done ;;
  "s3 cp") cat "` + s3 + `/${4#"$NODE_TOKEN_URL"}" ;;
  "s3 rm") rm "` + s3 + `/${4#"$NODE_TOKEN_URL"}" ;;
  "cloudwatch put-metric-data") echo "$*" >>"` + metrics + `" ;;
  *) exit 1 ;;
esac
`,
	}
	files["hostname"] = "#!/bin/sh\necho cp-a\n"
	if world.onSecondNode {
		files["hostname"] = "#!/bin/sh\necho cp-b\n"
	}
	bin := scriptDir(t, files, "control-plane-csr-approver.sh", "node-common.sh", "credentials.sh", "due.sh")
	cmd := exec.Command("bash", filepath.Join(bin, "control-plane-csr-approver.sh"))
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "ROLE=control-plane", "ZONE=eu-west-1a", "CLUSTER_NAME=c1", "CONTROL_PLANE_LABEL=" + ControlPlaneLabel,
		"ADMIN_KUBECONFIG=/dev/null", "LOCAL_API_URL=https://127.0.0.1:6443", "API_ENDPOINT=api.c1", "CSR_APPROVER_FAILED_METRIC=" + CSRApproverFailedMetric,
		"NODE_TOKEN_URL=s3://assets/" + NodeTokenPrefix, "WORKER_BOOTSTRAP_GROUP=" + WorkerBootstrapGroup, "INSTANCE_LABEL=" + InstanceLabel, "WORKER_TOKEN_TTL_SECONDS=3600",
		"BOOTSTRAP_METRIC_NAMESPACE=kubeha", "BOOTSTRAP_METRIC_DIMENSIONS=Cluster=c1",
		"TOKEN_LIST_SECONDS=" + fmt.Sprint(tokenListSeconds), "APPROVER_STATE_DIR=" + cmp.Or(world.stateDir, t.TempDir()),
		"JOINING_WORKERS_FILE=" + cmp.Or(world.joiningWorkers, filepath.Join(dir, "no-such-file")), "JOINING_WORKERS_MINUTES=" + fmt.Sprint(joiningWorkersMinutes)}
	if world.awsFails {
		cmd.Env = append(cmd.Env, "AWS_FAILS=1")
	}
	if world.s3Fails {
		cmd.Env = append(cmd.Env, "S3_FAILS=1")
	}
	var run approverRun
	run.code, run.log = runScript(t, cmd)
	calls, _ := os.ReadFile(filepath.Join(bin, "calls"))
	run.s3Lists = strings.Count(string(calls), "s3 ls")
	decided, _ := os.ReadFile(decisions)
	sent, _ := os.ReadFile(metrics)
	run.metrics = string(sent)
	if s := strings.TrimSpace(string(decided)); s != "" {
		run.decisions = strings.Split(s, "\n")
	}
	made, _ := os.ReadFile(filepath.Join(dir, "made.json"))
	for dec := json.NewDecoder(strings.NewReader(string(made))); dec.More(); {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		run.made = append(run.made, m)
	}
	left, _ := os.ReadDir(s3)
	for _, e := range left {
		run.handedOverLeft = append(run.handedOverLeft, e.Name())
	}
	return run
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
	run := runCSRApprover(t, approverWorld{instances: instances}, requests...)
	if run.code != 0 || run.metrics != "" {
		t.Fatalf("exit %d, metrics %q:\n%s", run.code, run.metrics, run.log)
	}
	decisions := run.decisions
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

	run = runCSRApprover(t, approverWorld{instances: instances, awsFails: true}, requests[0])
	if run.code == 0 || len(run.decisions) != 0 || !strings.Contains(run.metrics, "--metric-name "+CSRApproverFailedMetric) || !strings.Contains(run.log, "left pending") {
		t.Errorf("with EC2 unreachable: exit %d, decisions %v, metrics %q:\n%s", run.code, run.decisions, run.metrics, run.log)
	}
}

// TestCSRApproverGivesAWorkersTokenOnlyItsOwnName: a join token a worker
// handed over under its IAM user ID becomes a bootstrap token of the
// workers' group, labelled with its instance and expiring; a kubelet
// client certificate request made with a worker's token is approved only
// for its instance's private DNS name, with a kubelet's client usages and
// no addresses; a token of no instance gets nothing; requests of other
// groups are left to kube-controller-manager.
func TestCSRApproverGivesAWorkersTokenOnlyItsOwnName(t *testing.T) {
	instances := map[string]string{"ip-10-0-1-5": "10.0.1.5", "ip-10-0-2-7": "10.0.2.7"}
	world := approverWorld{instances: instances,
		handedOver: map[string]string{"AROAWORKERROLE:i-ip-10-0-1-5": "abcdef.0123456789abcdef", "AROAWORKERROLE:i-ip-10-0-2-7": "not a token"},
		tokens:     map[string]string{"cccccc": "i-ip-10-0-2-7", "zzzzzz": ""}}
	worker := []string{"system:bootstrappers", WorkerBootstrapGroup, "system:authenticated"}
	client, clientUsages := "kubernetes.io/kube-apiserver-client-kubelet", []string{"digital signature", "client auth"}
	of := func(node string) string { return servingRequest(t, node, nil) }
	requests := []csrCase{
		{name: "own", user: "system:bootstrap:cccccc", groups: worker, signer: client, usages: clientUsages, request: of("ip-10-0-2-7")},
		{name: "handed-over-this-run", user: "system:bootstrap:abcdef", groups: worker, signer: client, usages: clientUsages, request: of("ip-10-0-1-5")},
		{name: "other-name", user: "system:bootstrap:cccccc", groups: worker, signer: client, usages: clientUsages, request: of("ip-10-0-1-5")},
		{name: "control-plane-name", user: "system:bootstrap:cccccc", groups: worker, signer: client, usages: clientUsages, request: of("cp-a")},
		{name: "with-address", user: "system:bootstrap:cccccc", groups: worker, signer: client, usages: clientUsages,
			request: servingRequest(t, "ip-10-0-2-7", []string{"ip-10-0-2-7"}, "10.0.2.7")},
		{name: "server-usage", user: "system:bootstrap:cccccc", groups: worker, signer: client, usages: []string{"digital signature", "server auth"}, request: of("ip-10-0-2-7")},
		{name: "no-instance", user: "system:bootstrap:zzzzzz", groups: worker, signer: client, usages: clientUsages, request: of("ip-10-0-2-7")},
		{name: "gone", user: "system:bootstrap:gggggg", groups: worker, signer: client, usages: clientUsages, request: of("ip-10-0-2-7")},
		{name: "kubeadm-group", user: "system:bootstrap:zzzzzz", groups: []string{"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"},
			signer: client, usages: clientUsages, request: of("cp-b")},
	}
	run := runCSRApprover(t, world, requests...)
	if run.code != 0 || run.metrics != "" {
		t.Fatalf("exit %d, metrics %q:\n%s", run.code, run.metrics, run.log)
	}
	if len(run.handedOverLeft) != 0 || len(run.made) != 1 {
		t.Fatalf("S3 keys left %v, tokens made %v; want every handed-over key consumed and one token made:\n%s", run.handedOverLeft, run.made, run.log)
	}
	made, _ := json.Marshal(run.made[0])
	var token struct {
		Type     string
		Metadata struct {
			Name, Namespace string
			Labels          map[string]string
		}
		StringData map[string]string
	}
	if err := json.Unmarshal(made, &token); err != nil {
		t.Fatal(err)
	}
	expires, err := time.Parse(time.RFC3339, token.StringData["expiration"])
	d := token.StringData
	if token.Type != "bootstrap.kubernetes.io/token" || token.Metadata.Name != "bootstrap-token-abcdef" || token.Metadata.Namespace != "kube-system" ||
		token.Metadata.Labels[InstanceLabel] != "i-ip-10-0-1-5" || d["token-id"] != "abcdef" || d["token-secret"] != "0123456789abcdef" ||
		d["auth-extra-groups"] != WorkerBootstrapGroup || d["usage-bootstrap-authentication"] != "true" || d["usage-bootstrap-signing"] != "true" ||
		err != nil || time.Until(expires) > time.Hour || time.Until(expires) < 50*time.Minute {
		t.Errorf("token made: %s (expiry %v)", made, err)
	}
	want := map[string]string{"own": "Approved", "handed-over-this-run": "Approved",
		"other-name":         "Denied it is not for node ip-10-0-2-7, the name of instance i-ip-10-0-2-7",
		"control-plane-name": "Denied it is not for node ip-10-0-2-7", "with-address": "Denied a kubelet client certificate names no address",
		"server-usage": "Denied usages", "no-instance": "Denied system:bootstrap:zzzzzz is no join token of an instance",
		"gone": "Denied system:bootstrap:gggggg is no join token of an instance"}
	if len(run.decisions) != len(want) {
		t.Errorf("%d decisions, want %d:\n%s", len(run.decisions), len(want), strings.Join(run.decisions, "\n"))
	}
	for _, d := range run.decisions {
		name, decision, _ := strings.Cut(d, " ")
		if w, ok := want[name]; !ok || !strings.HasPrefix(decision, w) {
			t.Errorf("%s: %q, want %q", name, decision, w)
		}
	}
	if !strings.Contains(run.log, "is no instance's join token; deleting it") {
		t.Errorf("the handed-over key that held no token was not reported:\n%s", run.log)
	}

	// Only the first Ready control-plane node lists S3, makes tokens and
	// decides: each check asks EC2, and the others would repeat it.
	second := world
	second.onSecondNode = true
	run = runCSRApprover(t, second, requests...)
	if run.code != 0 || len(run.made) != 0 || len(run.handedOverLeft) != 2 || len(run.decisions) != 0 {
		t.Errorf("on cp-b: exit %d, made %v, left %v, decisions %v; want nothing done:\n%s",
			run.code, run.made, run.handedOverLeft, run.decisions, run.log)
	}

	// A token ID another instance holds is not taken over; the key is
	// consumed all the same.
	run = runCSRApprover(t, approverWorld{instances: instances, handedOver: map[string]string{"AROAWORKERROLE:i-ip-10-0-1-5": "cccccc.0123456789abcdef"},
		tokens: map[string]string{"cccccc": "i-ip-10-0-2-7"}})
	if run.code != 0 || len(run.made) != 0 || len(run.handedOverLeft) != 0 || !strings.Contains(run.log, "is taken (by i-ip-10-0-2-7)") {
		t.Errorf("a taken token ID: exit %d, made %v, left %v:\n%s", run.code, run.made, run.handedOverLeft, run.log)
	}
}

// TestCSRApproverListsHandedOverTokensEveryInterval: each listing of the
// tokens workers hand over starts the AWS CLI, so the approver, run every
// csrApproverIntervalSeconds, lists them at most every tokenListSeconds.
// A run whose tokens could not be made lists again on the next run.
func TestCSRApproverListsHandedOverTokensEveryInterval(t *testing.T) {
	instances := map[string]string{"ip-10-0-1-5": "10.0.1.5"}
	state := t.TempDir()
	run := runCSRApprover(t, approverWorld{instances: instances, stateDir: state})
	if run.code != 0 || run.s3Lists != 1 {
		t.Fatalf("first run: exit %d, %d listings, want 1:\n%s", run.code, run.s3Lists, run.log)
	}
	handedOver := map[string]string{"AROAWORKERROLE:i-ip-10-0-1-5": "abcdef.0123456789abcdef"}
	run = runCSRApprover(t, approverWorld{instances: instances, stateDir: state, handedOver: handedOver})
	if run.code != 0 || run.s3Lists != 0 || len(run.made) != 0 || len(run.handedOverLeft) != 1 {
		t.Errorf("a run %ds after listing: exit %d, %d listings, made %v, left %v; want no listing and the token left for later:\n%s",
			csrApproverIntervalSeconds, run.code, run.s3Lists, run.made, run.handedOverLeft, run.log)
	}
	// As if tokenListSeconds had gone by since the listing.
	stamp := filepath.Join(state, "tokens-listed")
	then := time.Now().Add(-tokenListSeconds * time.Second)
	if err := os.Chtimes(stamp, then, then); err != nil {
		t.Fatal(err)
	}
	run = runCSRApprover(t, approverWorld{instances: instances, stateDir: state, handedOver: handedOver, s3Fails: true})
	if run.code == 0 || run.s3Lists != 1 || len(run.made) != 0 || !strings.Contains(run.log, "trying again next run") {
		t.Errorf("S3 failing: exit %d, %d listings, made %v; want a failed run that listed once:\n%s", run.code, run.s3Lists, run.made, run.log)
	}
	run = runCSRApprover(t, approverWorld{instances: instances, stateDir: state, handedOver: handedOver})
	if run.code != 0 || run.s3Lists != 1 || len(run.made) != 1 || len(run.handedOverLeft) != 0 {
		t.Errorf("the run after a failure: exit %d, %d listings, made %v, left %v; want the token made at once:\n%s",
			run.code, run.s3Lists, run.made, run.handedOverLeft, run.log)
	}
}

// TestCSRApproverListsTokensOnlyWhileWorkersLaunch: the approver lists the
// tokens handed over only while the drainer lists workers launching, or
// when its list is older than joiningWorkersMinutes (a drainer failing
// must not keep a worker from its token).
func TestCSRApproverListsTokensOnlyWhileWorkersLaunch(t *testing.T) {
	instances := map[string]string{"ip-10-0-1-5": "10.0.1.5"}
	handedOver := map[string]string{"AROAWORKERROLE:i-ip-10-0-1-5": "abcdef.0123456789abcdef"}
	joining := filepath.Join(t.TempDir(), "joining-workers")
	for _, c := range []struct {
		name, workers string
		age           time.Duration
		lists         int
	}{
		{"none launching", "", 0, 0},
		{"one launching", "i-ip-10-0-1-5\n", 0, 1},
		{"none launching, listed long ago", "", (joiningWorkersMinutes + 1) * time.Minute, 1},
	} {
		if err := os.WriteFile(joining, []byte(c.workers), 0o644); err != nil {
			t.Fatal(err)
		}
		then := time.Now().Add(-c.age)
		if err := os.Chtimes(joining, then, then); err != nil {
			t.Fatal(err)
		}
		run := runCSRApprover(t, approverWorld{instances: instances, handedOver: handedOver, joiningWorkers: joining})
		if run.code != 0 || run.s3Lists != c.lists || len(run.made) != c.lists {
			t.Errorf("%s: exit %d, %d listings, made %v; want %d of each:\n%s", c.name, run.code, run.s3Lists, run.made, c.lists, run.log)
		}
	}
}
