package bootstrap

import (
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/pki"
)

// testNodes are one node of each kind, rendered with production-like
// values.
func testNodes(t *testing.T) map[string]Node {
	t.Helper()
	ca, err := pki.Issue(pki.KubernetesCA("c1"))
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := controlPlaneNode(t, testControlPlane(), "eu-west-1b")
	worker, err := Worker{KubernetesVersion: "v1.36.3", Endpoint: "c1-api.elb.example"}.Node(
		WorkerParams{Zone: "eu-west-1a", Region: "eu-west-1", CACertPEM: string(ca.CertPEM),
			SecretID: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kubeha-prod-join-AbCdEf", Assets: testAssets()})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]Node{"etcd": etcdNode(t, NewEtcdCluster("kubeha-prod", zones3, 3, 50, 15), 0), "control-plane": cp, "worker": worker}
}

// renderedLiterals are the literals a value stands for: itself, each item
// of a comma-separated list, both sides of name=value, and a URL's host,
// port and path.
func renderedLiterals(value string) []string {
	var out []string
	for _, item := range strings.Split(value, ",") {
		parts := []string{item}
		if name, rest, ok := strings.Cut(item, "="); ok {
			parts = append(parts, name, rest)
		}
		for _, p := range parts {
			out = append(out, p)
			if u, err := url.Parse(p); err == nil && u.Scheme != "" && u.Host != "" {
				out = append(out, u.Hostname(), u.Port())
				if u.Path != "/" {
					out = append(out, u.Path)
				}
			}
		}
	}
	out = append(out, value)
	return slices.DeleteFunc(out, func(s string) bool { return len(s) < 2 })
}

func wordChar(b byte) bool {
	return b == '_' || b == '-' || b == '.' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
}

// containsLiteral says whether code holds lit as a whole: not as part of a
// longer name or number (kubeha in kubeha-etcd, 2379 in 12379).
func containsLiteral(code, lit string) bool {
	for i := 0; ; {
		j := strings.Index(code[i:], lit)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(lit)
		before := start == 0 || !wordChar(lit[0]) || !wordChar(code[start-1])
		after := end == len(code) || !wordChar(lit[len(lit)-1]) || !wordChar(code[end])
		if before && after {
			return true
		}
		i = start + 1
	}
}

// code drops a script's comment lines: what it says there is not run.
func code(script string) string {
	var lines []string
	for _, line := range strings.Split(script, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}

// TestScriptsHoldNoRenderedValue: every value Go renders into a node's env
// file (paths, ports, URLs and their paths, metric and unit names), and
// every path Go writes a node file to, reaches the scripts only as a
// variable. A script that wrote one itself would drift from Go the day
// either side changed it.
func TestScriptsHoldNoRenderedValue(t *testing.T) {
	forbidden := map[string]string{} // literal -> where Go renders it
	for kind, n := range testNodes(t) {
		for _, kv := range n.Env {
			name, value, _ := strings.Cut(kv, "=")
			for _, lit := range renderedLiterals(value) {
				forbidden[lit] = kind + " " + path.Base(n.EnvFile) + " $" + name
			}
		}
		for _, f := range n.Files {
			forbidden[f.Path] = kind + " node file"
			forbidden[path.Dir(f.Path)] = kind + " node folder"
		}
	}
	// The derivation must cover what scripts once wrote themselves.
	for _, want := range []string{"2379", "2380", "6443", HealthCheckPath, EtcdSnapshotMetricNamespace, EtcdSnapshotMetric,
		EtcdVolumeMount, EtcdDataDir, EtcdPKIDir, EtcdConfigPath, EtcdRuntimeConfigPath, "https://127.0.0.1:2379",
		ScriptDir, EtcdEnvPath, NodeEnvPath, KubernetesPKIDir, AdminKubeconfigPath, KubeadmJoinConfigPath, KubeadmInitConfigPath,
		BinDir, "etcd.service", "kubeha-token-sync.timer", NodeSecretsDir + "/" + secretBootstrapToken, kernelModulesFile} {
		if _, ok := forbidden[want]; !ok {
			t.Errorf("%q is not among the literals derived from the rendered nodes", want)
		}
	}
	entries, err := scripts.ReadDir("scripts")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		text, err := scripts.ReadFile("scripts/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		body := code(string(text))
		for _, lit := range slices.Sorted(func(yield func(string) bool) {
			for k := range forbidden {
				if !yield(k) {
					return
				}
			}
		}) {
			if containsLiteral(body, lit) {
				t.Errorf("%s writes %q itself; Go renders it (%s)", e.Name(), lit, forbidden[lit])
			}
		}
	}
}

// The check finds what the scripts used to write, and passes over names
// that merely contain a value.
func TestContainsLiteral(t *testing.T) {
	for _, c := range []struct {
		code, lit string
		want      bool
	}{
		{`. /usr/local/lib/kubeha/etcd-common.sh`, ScriptDir, true},
		{`PKI=/etc/etcd/pki DATA_DIR=/var/lib/etcd/data LOCAL=https://127.0.0.1:2379`, "https://127.0.0.1:2379", true},
		{`[ "$url" = "https://$MEMBER_DNS:2379" ]`, "2379", true},
		{`curl -fsk "https://$API_ENDPOINT:6443/readyz"`, "6443", true},
		{`curl -fsk "https://$API_ENDPOINT:6443/readyz"`, "/readyz", true},
		{`put-metric-data --namespace kubeha --metric-name EtcdSnapshotUploaded`, "kubeha", true},
		{`grep -q ' /var/lib/etcd ' /etc/fstab`, EtcdVolumeMount, true},
		{`echo "kubeha-etcd[$MEMBER_NAME]: $*"`, "kubeha", false},
		{`listen 12379`, "2379", false},
		{`/var/lib/etcd-old`, EtcdVolumeMount, false},
	} {
		if got := containsLiteral(c.code, c.lit); got != c.want {
			t.Errorf("containsLiteral(%q, %q) = %v, want %v", c.code, c.lit, got, c.want)
		}
	}
}

// A shell that loads the env file as the starters do (envExec) sees
// exactly the variables Node.Env gives the local lab, quoted values
// included.
func TestEnvFileReadsBackAsRendered(t *testing.T) {
	for kind, n := range testNodes(t) {
		envPath := filepath.Join(t.TempDir(), "node.env")
		if err := os.WriteFile(envPath, []byte(n.File(n.EnvFile).Content), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("/bin/sh", "-c", envExec(envPath, "env")).Output()
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		seen := strings.Split(string(out), "\n")
		for _, kv := range n.Env {
			if !slices.Contains(seen, kv) {
				t.Errorf("%s: the shell does not see %s", kind, kv)
			}
		}
	}
}

func TestEnvFileRefusesWhatShellAndSystemdReadDifferently(t *testing.T) {
	for _, bad := range []string{`it's`, `a"b`, `$HOME`, "a\\b", "a`b`", "a\nb"} {
		if _, _, err := envFile("test", []envVar{{"X", bad}}); err == nil {
			t.Errorf("envFile accepted %q", bad)
		}
	}
}

// checkBootstrapUnit: cloud-init only starts the node's first boot, as a
// unit that runs script with the node's env file, reruns it on failure
// and never runs it again once done; the env file says how the script
// reports and gives up.
func checkBootstrapUnit(t *testing.T, n Node, envPath, script, cluster string) {
	t.Helper()
	if len(n.Commands) != 1 || !slices.Equal(n.Commands[0], []string{"systemctl", "enable", "--now", "--no-block", BootstrapUnit}) {
		t.Errorf("commands = %v, want %s started", n.Commands, BootstrapUnit)
	}
	u := n.File("/etc/systemd/system/" + BootstrapUnit)
	if u == nil {
		t.Fatalf("no %s", BootstrapUnit)
	}
	for _, want := range []string{"EnvironmentFile=" + envPath, "ExecStart=" + ScriptDir + "/" + script, "Type=oneshot",
		"Restart=on-failure", "RestartSec=30", "StartLimitIntervalSec=0", "ConditionPathExists=!" + BootstrapDoneFile, "WantedBy=multi-user.target"} {
		if !strings.Contains(u.Content, want+"\n") {
			t.Errorf("%s lacks %q:\n%s", BootstrapUnit, want, u.Content)
		}
	}
	env := n.File(envPath).Content
	for _, want := range []string{"BOOTSTRAP_DEADLINE_SECONDS=1200", "LAUNCH_HOOK=" + LaunchHook,
		"BOOTSTRAP_FAILED_METRIC=" + BootstrapFailedMetric, "BOOTSTRAP_METRIC_DIMENSIONS=Cluster=" + cluster} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("%s lacks %q", envPath, want)
		}
	}
	if n.File(ScriptDir+"/bootstrap-steps.sh") == nil {
		t.Errorf("bootstrap-steps.sh is not on the node")
	}
}

// TestUserDataScriptsDropOnlyCommentLines: every script user-data carries
// is its source less comment lines, keeping the shebang, shellcheck
// directives and here-documents whole, and still parses (bash -n).
func TestUserDataScriptsDropOnlyCommentLines(t *testing.T) {
	entries, err := scripts.ReadDir("scripts")
	if err != nil {
		t.Fatal(err)
	}
	saved := 0
	for _, e := range entries {
		source, err := scripts.ReadFile("scripts/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		carried := withoutCommentLines(string(source))
		kept := strings.Split(carried, "\n")
		for _, line := range strings.Split(string(source), "\n") {
			if len(kept) > 0 && line == kept[0] {
				kept = kept[1:]
				continue
			}
			if trimmed := strings.TrimSpace(line); !strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "# shellcheck ") || strings.HasPrefix(line, "#!") {
				t.Errorf("%s: dropped %q, not a comment line", e.Name(), line)
			}
		}
		if len(kept) != 0 {
			t.Errorf("%s: carries lines not in its source: %q", e.Name(), kept)
		}
		if out, err := exec.Command("bash", "-n", "-c", carried).CombinedOutput(); err != nil {
			t.Errorf("%s as carried does not parse: %v %s", e.Name(), err, out)
		}
		saved += len(source) - len(carried)
	}
	heredoc := "#!/bin/bash\n# a comment\ncat <<'EOF'\n# kept: data\nEOF\n  # indented comment\necho $((1 << 2)) # inline stays\n"
	if got, want := withoutCommentLines(heredoc), "#!/bin/bash\ncat <<'EOF'\n# kept: data\nEOF\necho $((1 << 2)) # inline stays\n"; got != want {
		t.Errorf("withoutCommentLines:\n%s\nwant:\n%s", got, want)
	}
	t.Logf("%d scripts, %d bytes of comment lines left out of user-data", len(entries), saved)
}
