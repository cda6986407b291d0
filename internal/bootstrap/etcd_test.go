package bootstrap

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var zones3 = []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}

func etcdNode(t *testing.T, c EtcdCluster, i int) Node {
	t.Helper()
	n, err := c.Node(EtcdNodeParams{Member: c.Members[i], Region: "eu-west-1", VolumeID: "vol-0123456789abcdef0",
		HostedZoneID: "Z0123456789ABCDEFGHIJ", SecretID: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kubeha-prod/etcd/etcd-a-AbCdEf",
		BackupBucket: "kubeha-prod-etcd-backups-0123456789", KMSKeyID: "arn:aws:kms:eu-west-1:123456789012:key/01234567-89ab-cdef-0123-456789abcdef",
		AssetBucket: "kubeha-prod-assets-0123456789", Etcd: PinnedAssets().Etcd})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEtcdMembersRoundRobin(t *testing.T) {
	members := EtcdMembers("c1", zones3, 5)
	want := []string{"eu-west-1a", "eu-west-1b", "eu-west-1c", "eu-west-1a", "eu-west-1b"}
	for i, m := range members {
		if m.Zone != want[i] || m.DNSName != m.Name+".c1.internal" {
			t.Errorf("member %d = %+v, want zone %s", i, m, want[i])
		}
	}
	if members[4].Name != "etcd-e" {
		t.Errorf("fifth member named %s", members[4].Name)
	}
}

func TestEtcdConfig(t *testing.T) {
	c := NewEtcdCluster("c1", zones3, 3, 10, 15)
	text, err := c.Config(c.Members[1])
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"name":                        "etcd-b",
		"initial-advertise-peer-urls": "https://etcd-b.c1.internal:2380",
		"initial-cluster":             "etcd-a=https://etcd-a.c1.internal:2380,etcd-b=https://etcd-b.c1.internal:2380,etcd-c=https://etcd-c.c1.internal:2380",
		"initial-cluster-state":       "new",
		"heartbeat-interval":          100,
		"election-timeout":            1000,
		"quota-backend-bytes":         5 << 30,
		"data-dir":                    EtcdDataDir,
	} {
		if cfg[k] != want {
			t.Errorf("%s = %v, want %v", k, cfg[k], want)
		}
	}
	for _, side := range []string{"client-transport-security", "peer-transport-security"} {
		tls := cfg[side].(map[string]any)
		if tls["client-cert-auth"] != true || tls["auto-tls"] != false || tls["cert-file"] == nil || tls["key-file"] == nil || tls["trusted-ca-file"] == nil {
			t.Errorf("%s = %v, want mutual TLS with kubeha's certificates", side, tls)
		}
	}
	if suites := fmt.Sprint(cfg["cipher-suites"]); suites != fmt.Sprint(TLSCipherSuites) {
		t.Errorf("cipher-suites = %s, want kubeha's strong suites only", suites)
	}
	if big := NewEtcdCluster("c1", zones3, 3, 100, 15); big.QuotaBytes != 8<<30 {
		t.Errorf("quota for a 100 GiB volume = %d, want etcd's 8 GiB maximum", big.QuotaBytes)
	}
}

// TestEtcdUserDataPassesRealTools checks every member's user-data with
// cloud-init's own schema, every script in it with shellcheck, and the
// EC2 size limit, as the other roles' are checked.
func TestEtcdUserDataPassesRealTools(t *testing.T) {
	for _, members := range []int{3, 5} {
		c := NewEtcdCluster("kubeha-prod", zones3, members, 50, 15)
		for i, m := range c.Members {
			checkUserDataWithRealTools(t, fmt.Sprintf("etcd (%s of %d members)", m.Name, members), etcdNode(t, c, i))
		}
	}
}

// checkKeys catches what `cloud-init schema` lets through: unknown
// top-level keys such as a misspelt write_files.
func checkKeys(t *testing.T, doc []byte) {
	t.Helper()
	var top map[string]any
	if err := yaml.Unmarshal(doc, &top); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"package_update": true, "packages": true, "write_files": true, "runcmd": true}
	for k := range top {
		if !known[k] {
			t.Errorf("user-data has top-level key %q, which cloud-init ignores", k)
		}
	}
}

// checkScripts runs shellcheck on every script the node gets, laid out in
// one folder so that `source` directives resolve.
func checkScripts(t *testing.T, shellcheck string, n Node) {
	t.Helper()
	dir := t.TempDir()
	var scripts []string
	for _, f := range n.Files {
		if strings.HasPrefix(f.Content, "#!") || strings.HasSuffix(f.Path, ".sh") {
			path := filepath.Join(dir, filepath.Base(f.Path))
			if err := os.WriteFile(path, []byte(f.Content), 0o755); err != nil {
				t.Fatal(err)
			}
			scripts = append(scripts, path)
		}
	}
	if len(scripts) < 4 {
		t.Fatalf("found %d scripts in the node, want at least 4", len(scripts))
	}
	args := append([]string{"-x", "-P", "SCRIPTDIR", "--severity=style"}, scripts...)
	if out, err := exec.Command(shellcheck, args...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

func TestEtcdNodeUnits(t *testing.T) {
	c := NewEtcdCluster("c1", zones3, 3, 10, 30)
	n := etcdNode(t, c, 0)
	unit := n.File("/etc/systemd/system/etcd.service")
	if unit == nil || !strings.Contains(unit.Content, "Restart=always") || !strings.Contains(unit.Content, "ExecStart="+ScriptDir+"/etcd-start.sh") ||
		!strings.Contains(unit.Content, "\nConditionPathExists=!"+EtcdHoldFile+"\n") {
		t.Errorf("etcd.service = %+v, want Restart=always, the start script, and no start while the restore's hold file exists", unit)
	}
	timer := n.File("/etc/systemd/system/kubeha-etcd-backup.timer")
	if timer == nil || !strings.Contains(timer.Content, "OnUnitActiveSec=30min") {
		t.Errorf("backup timer does not run every 30 min: %+v", timer)
	}
	env := n.File(EtcdEnvPath).Content
	for _, want := range []string{"VOLUME_ID=vol-0123456789abcdef0", "BACKUP_URL=s3://kubeha-prod-etcd-backups-0123456789/snapshots",
		// etcd comes from the asset bucket, checked against the release's published digest.
		"ETCD_ARCHIVE_URL=s3://kubeha-prod-assets-0123456789/etcd/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz",
		"ETCD_ARCHIVE_SHA256=ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5",
		// etcd-leave.sh finds a silent member's group by these tags.
		"LEAVE_HOOK=" + EtcdLeaveHook, "CLUSTER_TAG=kubernetes.io/cluster/c1", "MEMBER_TAG=" + EtcdMemberTag,
		// The alarm watches what the backup script sends.
		"SNAPSHOT_METRIC_NAMESPACE=" + EtcdSnapshotMetricNamespace, "SNAPSHOT_METRIC=" + EtcdSnapshotMetric,
		"SNAPSHOT_METRIC_DIMENSIONS=" + EtcdSnapshotMetricDimension + "=c1"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("etcd.env lacks %q", want)
		}
	}
	backup := n.File(ScriptDir + "/etcd-backup.sh")
	if backup == nil || !strings.Contains(backup.Content, `--namespace "$SNAPSHOT_METRIC_NAMESPACE" --metric-name "$SNAPSHOT_METRIC"`) {
		t.Errorf("etcd-backup.sh does not send the metric etcd.env names")
	}
	checkBootstrapUnit(t, n, EtcdEnvPath, "etcd-bootstrap.sh", "c1")
	restore := n.File(EtcdRestoreCommand)
	if restore == nil || !strings.Contains(restore.Content, envExec(EtcdEnvPath, ScriptDir+"/etcd-restore.sh")+` "$@"`) {
		t.Errorf("%s = %+v, want etcd-restore.sh with etcd.env loaded", EtcdRestoreCommand, restore)
	}
}

// Every etcd release kubeha pins carries the digest its release's
// SHA256SUMS publishes, as kubespray recorded it: a pin never published,
// or a digest mistyped, fails here rather than on a member's first boot.
func TestEtcdPinsAreRecorded(t *testing.T) {
	var record struct {
		Checksums struct {
			AMD64 map[string]string `yaml:"amd64"`
		} `yaml:"etcd_binary_checksums"`
	}
	data, err := os.ReadFile("testdata/etcd-checksums.yaml")
	if err == nil {
		err = yaml.Unmarshal(data, &record)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := EtcdReleases[EtcdVersion]; !ok || len(EtcdReleases) < 2 {
		t.Errorf("pins %v, default %s: want the default among two or more, so that clusters can roll from one to the next", EtcdReleases, EtcdVersion)
	}
	for version, sum := range EtcdReleases {
		if recorded := record.Checksums.AMD64[strings.TrimPrefix(version, "v")]; recorded != "sha256:"+sum {
			t.Errorf("etcd %s is pinned at %s, its release records %q", version, sum, recorded)
		}
	}
}
