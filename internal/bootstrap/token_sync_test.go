package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// runTokenSync runs control-plane-token-sync.sh with the cluster secret
// holding token, against a fake kubeadm whose tokens are the lines of
// the returned file (started with existing; "fail" makes token create
// fail) and a fake aws that records the metrics sent. It returns the exit
// code, the tokens left, the metrics sent and the log.
func runTokenSync(t *testing.T, token string, existing ...string) (int, []string, string, string) {
	t.Helper()
	dir := t.TempDir()
	tokens, metrics := filepath.Join(dir, "tokens"), filepath.Join(dir, "metrics")
	if err := os.WriteFile(tokens, []byte(strings.Join(existing, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fakes := map[string]string{
		"aws": `#!/bin/sh
case "$1 $2" in
  "secretsmanager get-secret-value") printf '{"bootstrap-token":"%s"}\n' "$TOKEN" ;;
  "cloudwatch put-metric-data") echo "$*" >>"` + metrics + `" ;;
esac
`,
		// kubeadm token list|create|delete over the tokens file, as the
		// real one refuses a token whose ID exists.
		"kubeadm": `#!/bin/bash
set -e
f="` + tokens + `"
case "$2" in
  list) grep -v '^$' "$f" || true ;;
  create)
    [ "$3" != fail.0000000000000000 ] || exit 1
    if grep -q "^${3%%.*}\." "$f"; then echo "token ID ${3%%.*} already exists" >&2; exit 1; fi
    echo "$3" >>"$f" ;;
  delete) grep -v "^$3\." "$f" >"$f.new" || true; mv "$f.new" "$f" ;;
esac
`,
	}
	bin := scriptDir(t, fakes, "control-plane-token-sync.sh", "node-common.sh", "credentials.sh")
	cmd := exec.Command("bash", filepath.Join(bin, "control-plane-token-sync.sh"))
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "TOKEN=" + token, "ROLE=control-plane", "ZONE=eu-west-1a",
		"SECRET_ID=c1-control-plane", "PKI_SECRET_PREFIX=pki/", "KUBERNETES_PKI_DIR=" + filepath.Join(dir, "pki"),
		"SECRETS_DIR=" + filepath.Join(dir, "secrets"), "BOOTSTRAP_TOKEN_FILE=" + filepath.Join(dir, "secrets", secretBootstrapToken),
		"ADMIN_KUBECONFIG=/dev/null", "TOKEN_DESCRIPTION=" + BootstrapTokenDescription, "WORKER_BOOTSTRAP_GROUP=" + WorkerBootstrapGroup, "TOKEN_SYNC_FAILED_METRIC=" + TokenSyncFailedMetric,
		"BOOTSTRAP_METRIC_NAMESPACE=kubeha", "BOOTSTRAP_METRIC_DIMENSIONS=Cluster=c1"}
	code, out := runScript(t, cmd)
	left, _ := os.ReadFile(tokens)
	sent, _ := os.ReadFile(metrics)
	return code, strings.Fields(string(left)), string(sent), out
}

// TestTokenSyncLeavesOnlyTheSecretsToken: the sync creates the cluster
// secret's token and deletes every other, whatever its description, but
// a worker's own;
// a rotation that kept the ID replaces the token under it; a failed run
// counts TokenSyncFailedMetric.
func TestTokenSyncLeavesOnlyTheSecretsToken(t *testing.T) {
	const current = "abcdef.0123456789abcdef"
	// As kubeadm token list prints a token and its groups.
	worker := "wwwwww.0123456789abcdef [\"" + WorkerBootstrapGroup + "\"]"
	for _, c := range []struct {
		name     string
		existing []string
	}{
		{"rotated: a new ID", []string{"oldold.0123456789abcdef", "byhand.fedcba9876543210"}},
		{"a worker's own token, which stays", []string{current, worker}},
		{"rotated: the same ID, a new secret", []string{"abcdef.ffffffffffffffff"}},
		{"in sync", []string{current}},
		{"no token at all", nil},
	} {
		code, left, metrics, log := runTokenSync(t, current, c.existing...)
		want := []string{current}
		if slices.Contains(c.existing, worker) {
			want = []string{current, strings.Fields(worker)[0]}
		}
		if got := slices.DeleteFunc(left, func(f string) bool { return strings.HasPrefix(f, "[") }); code != 0 || !slices.Equal(got, want) || metrics != "" {
			t.Errorf("%s: exit %d, tokens %v, metrics %q; want 0, only %v, none\n%s", c.name, code, got, metrics, want, log)
		}
	}
	code, left, metrics, log := runTokenSync(t, "fail.0000000000000000", "oldold.0123456789abcdef")
	if code == 0 || !strings.Contains(metrics, "--metric-name "+TokenSyncFailedMetric) || len(left) != 1 {
		t.Errorf("a failed create: exit %d, tokens %v, metrics %q; want a failure counted and the old token kept\n%s", code, left, metrics, log)
	}
}

// TestWorkerHandsOverItsOwnToken: a worker makes a kubeadm token of its
// own, owner-only, and writes it under its IAM user ID; a rerun hands over
// the same token, not a new one.
func TestWorkerHandsOverItsOwnToken(t *testing.T) {
	dir := t.TempDir()
	handedOver := filepath.Join(dir, "handed-over")
	bin := scriptDir(t, map[string]string{"aws": `#!/bin/sh
case "$1 $2" in
  "sts get-caller-identity") echo AROAWORKERROLE:i-0abc ;;
  "s3 cp") [ "$4" = - ] && echo "$5" >>"` + handedOver + `" && cat >>"` + handedOver + `" ;;
  *) exit 1 ;;
esac
`}, "worker-join-token.sh", "node-common.sh", "credentials.sh")
	tokenFile := filepath.Join(dir, "secrets", secretBootstrapToken)
	var tokens []string
	for range 2 {
		cmd := exec.Command("bash", filepath.Join(bin, "worker-join-token.sh"))
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "ROLE=worker", "ZONE=eu-west-1a", "BOOTSTRAP_TOKEN_FILE=" + tokenFile,
			"NODE_TOKEN_URL=s3://assets/" + NodeTokenPrefix}
		if code, log := runScript(t, cmd); code != 0 {
			t.Fatalf("exit %d:\n%s", code, log)
		}
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, strings.TrimSpace(string(data)))
	}
	info, err := os.Stat(tokenFile)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, mode %v; want owner-only", err, info.Mode().Perm())
	}
	if !regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`).MatchString(tokens[0]) || tokens[1] != tokens[0] {
		t.Errorf("tokens %q, want one kubeadm token, kept across runs", tokens)
	}
	got, _ := os.ReadFile(handedOver)
	key := "s3://assets/" + NodeTokenPrefix + "AROAWORKERROLE:i-0abc"
	if want := strings.Repeat(key+"\n"+tokens[0]+"\n", 2); string(got) != want {
		t.Errorf("handed over:\n%s\nwant:\n%s", got, want)
	}
}
