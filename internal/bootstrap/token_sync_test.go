package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
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
	bin := scriptDir(t, fakes, "control-plane-token-sync.sh", "node-common.sh")
	cmd := exec.Command("bash", filepath.Join(bin, "control-plane-token-sync.sh"))
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "TOKEN=" + token, "ROLE=control-plane", "ZONE=eu-west-1a",
		"SECRET_ID=c1-control-plane", "PKI_SECRET_PREFIX=pki/", "KUBERNETES_PKI_DIR=" + filepath.Join(dir, "pki"),
		"SECRETS_DIR=" + filepath.Join(dir, "secrets"), "BOOTSTRAP_TOKEN_FILE=" + filepath.Join(dir, "secrets", secretBootstrapToken),
		"ADMIN_KUBECONFIG=/dev/null", "TOKEN_DESCRIPTION=" + BootstrapTokenDescription, "TOKEN_SYNC_FAILED_METRIC=" + TokenSyncFailedMetric,
		"BOOTSTRAP_METRIC_NAMESPACE=kubeha", "BOOTSTRAP_METRIC_DIMENSIONS=Cluster=c1"}
	code, out := runScript(t, cmd)
	left, _ := os.ReadFile(tokens)
	sent, _ := os.ReadFile(metrics)
	return code, strings.Fields(string(left)), string(sent), out
}

// TestTokenSyncLeavesOnlyTheSecretsToken: the sync creates the cluster
// secret's token and deletes every other, whatever its description;
// a rotation that kept the ID replaces the token under it; a failed run
// counts TokenSyncFailedMetric.
func TestTokenSyncLeavesOnlyTheSecretsToken(t *testing.T) {
	const current = "abcdef.0123456789abcdef"
	for _, c := range []struct {
		name     string
		existing []string
	}{
		{"rotated: a new ID", []string{"oldold.0123456789abcdef", "byhand.fedcba9876543210"}},
		{"rotated: the same ID, a new secret", []string{"abcdef.ffffffffffffffff"}},
		{"in sync", []string{current}},
		{"no token at all", nil},
	} {
		code, left, metrics, log := runTokenSync(t, current, c.existing...)
		if code != 0 || strings.Join(left, ",") != current || metrics != "" {
			t.Errorf("%s: exit %d, tokens %v, metrics %q; want 0, only %s, none\n%s", c.name, code, left, metrics, current, log)
		}
	}
	code, left, metrics, log := runTokenSync(t, "fail.0000000000000000", "oldold.0123456789abcdef")
	if code == 0 || !strings.Contains(metrics, "--metric-name "+TokenSyncFailedMetric) || len(left) != 1 {
		t.Errorf("a failed create: exit %d, tokens %v, metrics %q; want a failure counted and the old token kept\n%s", code, left, metrics, log)
	}
}
