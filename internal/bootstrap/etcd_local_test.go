package bootstrap_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

// What a member sees at its real paths, from its own folder.
var memberBinds = []string{"/etc/etcd", "/etc/kubeha", "/var/lib/etcd", "/usr/local/lib/kubeha", "/usr/local/bin", "/run/kubeha"}

// etcdLab is a rendered etcd cluster running in network namespaces.
type etcdLab struct {
	t       *testing.T
	lab     *netlab.Lab
	cluster bootstrap.EtcdCluster
	members []*member
	client  *netlab.Host // holds the API servers' client certificate
	bucket  string
}

type member struct {
	spec bootstrap.EtcdMember
	host *netlab.Host
	env  []string // the member's env file, as systemd loads it
	etcd *exec.Cmd
}

func requireLab(t *testing.T) {
	t.Helper()
	if why := netlab.Available(); why != "" {
		tools.Unavailable(t, "the real-etcd test "+why)
	}
}

// newEtcdLab renders a 3-member cluster and lays out each member's files,
// certificates and binaries, without starting anything.
func newEtcdLab(t *testing.T, prefix string, cluster bootstrap.EtcdCluster, ca *pki.Pair, bucket string) *etcdLab {
	t.Helper()
	lab, err := netlab.New(prefix, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if left := lab.Namespaces(); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	hosts := map[string]string{}
	for i, m := range cluster.Members {
		hosts[m.DNSName] = fmt.Sprintf("10.200.0.%d", 11+i)
	}
	l := &etcdLab{t: t, lab: lab, cluster: cluster, bucket: bucket}
	for i, m := range cluster.Members {
		h, err := lab.AddHost(m.Name, hosts[m.DNSName], memberBinds, hosts)
		if err != nil {
			t.Fatal(err)
		}
		node, err := cluster.Node(bootstrap.EtcdNodeParams{Member: m, Region: "eu-west-1", VolumeID: "vol-local",
			HostedZoneID: "ZLOCAL", SecretID: "local", BackupBucket: "backups", KMSKeyID: "local"})
		if err != nil {
			t.Fatal(err)
		}
		if err := node.WriteTo(h.Root); err != nil {
			t.Fatal(err)
		}
		writeCerts(t, h.Root, ca, map[string]pki.Spec{"server": pki.EtcdServer(m.DNSName), "peer": pki.EtcdPeer(m.DNSName)})
		writeBinaries(t, h.Root, bucket)
		l.members = append(l.members, &member{spec: cluster.Members[i], host: h, env: node.Env})
	}
	l.client, err = lab.AddHost("client", "10.200.0.20", memberBinds, hosts)
	if err != nil {
		t.Fatal(err)
	}
	writeCerts(t, l.client.Root, ca, map[string]pki.Spec{"client": pki.EtcdClient("kube-apiserver-etcd-client")})
	writeBinaries(t, l.client.Root, bucket)
	return l
}

func writeCerts(t *testing.T, root string, ca *pki.Pair, specs map[string]pki.Spec) {
	t.Helper()
	dir := filepath.Join(root, bootstrap.EtcdPKIDir)
	must(t, os.MkdirAll(dir, 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644))
	for name, spec := range specs {
		pair, err := ca.Sign(spec)
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.WriteFile(filepath.Join(dir, name+".crt"), pair.CertPEM, 0o644))
		must(t, os.WriteFile(filepath.Join(dir, name+".key"), pair.KeyPEM, 0o600))
	}
}

func writeBinaries(t *testing.T, root, bucket string) {
	t.Helper()
	bin := filepath.Join(root, "usr/local/bin")
	must(t, os.MkdirAll(bin, 0o755))
	for _, name := range []string{"etcd", "etcdctl", "etcdutl"} {
		path, err := tools.Path(name)
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.Symlink(path, filepath.Join(bin, name)))
	}
	must(t, os.WriteFile(filepath.Join(bin, "aws"), []byte(netlab.AWSShim(bucket)), 0o755))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// start runs the rendered etcd-start.sh on member i, as systemd would.
func (l *etcdLab) start(i int) {
	m := l.members[i]
	m.etcd = m.host.Command(m.env, bootstrap.ScriptDir+"/etcd-start.sh")
	log, err := os.OpenFile(filepath.Join(m.host.Root, "etcd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(l.t, err)
	m.etcd.Stdout, m.etcd.Stderr = log, log
	must(l.t, m.host.Start(m.etcd))
}

func (l *etcdLab) kill(i int) {
	l.members[i].host.Stop(l.members[i].etcd)
}

// script runs one of the rendered scripts on member i.
func (l *etcdLab) script(i int, name string, args ...string) (string, error) {
	out, err := l.members[i].host.Command(l.members[i].env, bootstrap.ScriptDir+"/"+name, args...).CombinedOutput()
	return string(out), err
}

// ctl runs etcdctl from the client host with the API servers' certificate.
func (l *etcdLab) ctl(endpoints string, args ...string) (string, error) {
	pkiDir := bootstrap.EtcdPKIDir
	full := append([]string{"--endpoints", endpoints, "--cacert", pkiDir + "/ca.crt", "--cert", pkiDir + "/client.crt",
		"--key", pkiDir + "/client.key", "--command-timeout", "2s", "--dial-timeout", "1s"}, args...)
	out, err := l.client.Command(nil, "/usr/local/bin/etcdctl", full...).CombinedOutput()
	return string(out), err
}

func (l *etcdLab) endpoints(except ...int) string {
	var urls []string
	for i, m := range l.members {
		skip := false
		for _, e := range except {
			skip = skip || e == i
		}
		if !skip {
			urls = append(urls, m.spec.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// waitFor polls until ok returns nil or the deadline passes, and returns how
// long it took.
func (l *etcdLab) waitFor(what string, limit time.Duration, ok func() error) time.Duration {
	l.t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		if err = ok(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range l.members {
		logData, _ := os.ReadFile(filepath.Join(m.host.Root, "etcd.log"))
		l.t.Logf("%s log tail:\n%s", m.spec.Name, tail(string(logData), 15))
	}
	l.t.Fatalf("%s: not within %s: %v", what, limit, err)
	return 0
}

func (l *etcdLab) healthy(endpoints string) error {
	out, err := l.ctl(endpoints, "endpoint", "health")
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

type endpointStatus struct {
	Endpoint string
	Status   struct {
		Header struct {
			MemberID uint64 `json:"member_id"`
		} `json:"header"`
		Leader uint64 `json:"leader"`
	}
}

// leader returns the index of the member every reachable endpoint in
// endpoints agrees is leader, and its member ID.
func (l *etcdLab) leader(endpoints string) (int, uint64, error) {
	out, err := l.ctl(endpoints, "endpoint", "status", "-w", "json")
	if err != nil {
		return -1, 0, fmt.Errorf("%v: %s", err, out)
	}
	var statuses []endpointStatus
	if err := json.Unmarshal([]byte(out), &statuses); err != nil {
		return -1, 0, fmt.Errorf("%v: %s", err, out)
	}
	var leaderID uint64
	for _, s := range statuses {
		if s.Status.Leader == 0 || (leaderID != 0 && s.Status.Leader != leaderID) {
			return -1, 0, fmt.Errorf("no agreed leader: %s", out)
		}
		leaderID = s.Status.Leader
	}
	for _, s := range statuses {
		if s.Status.Header.MemberID == leaderID {
			for i, m := range l.members {
				if s.Endpoint == m.spec.ClientURL() {
					return i, leaderID, nil
				}
			}
		}
	}
	return -1, leaderID, fmt.Errorf("leader %x is not among %s", leaderID, endpoints)
}

// put writes n keys from first, retrying each for up to 10 s, and returns
// how many attempts failed before being acknowledged.
func (l *etcdLab) put(endpoints string, first, n int) (failures int) {
	for k := first; k < first+n; k++ {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := l.ctl(endpoints, "put", key(k), "value-"+strconv.Itoa(k))
			if err == nil && strings.Contains(out, "OK") {
				break
			}
			failures++
			if time.Now().After(deadline) {
				l.t.Fatalf("write %s never acknowledged: %v %s", key(k), err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return failures
}

func key(k int) string { return fmt.Sprintf("/kubeha-test/%05d", k) }

// keys returns the acknowledged keys present, read from endpoints; with
// serializable set, from that member's local copy.
func (l *etcdLab) keys(endpoints string, serializable bool) (map[string]string, error) {
	args := []string{"get", "/kubeha-test/", "--prefix"}
	if serializable {
		args = append(args, "--consistency", "s")
	}
	out, err := l.ctl(endpoints, args...)
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	got := map[string]string{}
	for i := 0; i+1 < len(lines); i += 2 {
		got[lines[i]] = lines[i+1]
	}
	return got, nil
}

func (l *etcdLab) expectKeys(endpoints string, serializable bool, n int) error {
	got, err := l.keys(endpoints, serializable)
	if err != nil {
		return err
	}
	for k := 0; k < n; k++ {
		if got[key(k)] != "value-"+strconv.Itoa(k) {
			return fmt.Errorf("%s = %q, want value-%d (%d keys present)", key(k), got[key(k)], k, len(got))
		}
	}
	if len(got) != n {
		return fmt.Errorf("%d keys present, want exactly %d", len(got), n)
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// labZones are the lab's three zones.
var labZones = []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}

// newLabEtcd lays out the lab's 3-member etcd (not started) with its CA
// and the folder that stands for S3 and Secrets Manager.
func newLabEtcd(t *testing.T, prefix string) (*etcdLab, *pki.Pair, string) {
	t.Helper()
	cluster := bootstrap.NewEtcdCluster("kubeha-lab", labZones, 3, 8, 15)
	ca, err := pki.Issue(pki.EtcdCA(cluster.ClusterName))
	must(t, err)
	store := t.TempDir()
	return newEtcdLab(t, fmt.Sprintf("%s%d", prefix, os.Getpid()%10000), cluster, ca, store), ca, store
}

// TestEtcdClusterLocal runs the rendered etcd cluster for real: three
// members in three network namespaces, each started by the rendered
// etcd-start.sh from the rendered config, with certificates issued from the
// same specs the EtcdCluster component gives pulumi-tls.
func TestEtcdClusterLocal(t *testing.T) {
	requireLab(t)
	l, ca, bucket := newLabEtcd(t, "ke")
	cluster := l.cluster
	all := l.endpoints()

	// The cluster forms.
	for i := range l.members {
		l.start(i)
	}
	formed := l.waitFor("3-member cluster healthy", 60*time.Second, func() error { return l.healthy(all) })
	t.Logf("MEASURED: 3-member cluster formed in %s", formed.Round(time.Millisecond))

	// A client without a certificate is refused at the TLS handshake; the
	// same request with the client certificate is answered.
	url := l.members[0].spec.ClientURL() + "/version"
	pkiDir := bootstrap.EtcdPKIDir
	out, err := l.client.Command(nil, "curl", "-sS", "--max-time", "5", "--cacert", pkiDir+"/ca.crt", url).CombinedOutput()
	if err == nil {
		t.Fatalf("etcd answered a client without a certificate: %s", out)
	}
	t.Logf("client without certificate refused: %s", strings.TrimSpace(string(out)))
	out, err = l.client.Command(nil, "curl", "-sS", "--max-time", "5", "--cacert", pkiDir+"/ca.crt",
		"--cert", pkiDir+"/client.crt", "--key", pkiDir+"/client.key", url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"etcdserver":"3.6.6"`) {
		t.Fatalf("with the client certificate: %v %s", err, out)
	}

	// Writes, then kill the leader: writes still succeed, none is lost.
	l.put(all, 0, 100)
	oldLeader, oldID, err := l.leader(all)
	must(t, err)
	l.kill(oldLeader)
	survivors := l.endpoints(oldLeader)
	reelected := l.waitFor("new leader", 30*time.Second, func() error {
		_, id, err := l.leader(survivors)
		if err == nil && id == oldID {
			return fmt.Errorf("old leader %x still reported", id)
		}
		return err
	})
	t.Logf("MEASURED: leader %s killed; new leader elected after %s", l.members[oldLeader].spec.Name, reelected.Round(time.Millisecond))
	failures := l.put(survivors, 100, 100)
	t.Logf("with %s down: 100 writes acknowledged, %d attempts retried", l.members[oldLeader].spec.Name, failures)
	must(t, l.expectKeys(survivors, false, 200))

	// The killed member restarts on its own data dir and catches up.
	l.start(oldLeader)
	rejoined := l.waitFor("killed member back", 30*time.Second, func() error {
		if err := l.healthy(all); err != nil {
			return err
		}
		return l.expectKeys(l.members[oldLeader].spec.ClientURL(), true, 200)
	})
	t.Logf("MEASURED: %s restarted on its data and caught up in %s", l.members[oldLeader].spec.Name, rejoined.Round(time.Millisecond))

	// The backup script takes exactly one snapshot: on the leader.
	var took []string
	for i := range l.members {
		out, err := l.script(i, "etcd-backup.sh")
		if err != nil {
			t.Fatalf("etcd-backup.sh on %s: %v\n%s", l.members[i].spec.Name, err, out)
		}
		if strings.Contains(out, "snapshot saved") {
			took = append(took, l.members[i].spec.Name)
		}
	}
	snapshots, _ := filepath.Glob(filepath.Join(bucket, "backups/snapshots/*.db"))
	if len(took) != 1 || len(snapshots) != 1 {
		t.Fatalf("backup ran on %v and left %v; want exactly one snapshot, from the leader", took, snapshots)
	}
	// The upload is counted for the snapshot-age alarm, and Prometheus'
	// backup alert sees the snapshot in etcd's own metrics.
	metric := fmt.Sprintf("--namespace %s --metric-name %s --dimensions %s=%s ", bootstrap.EtcdSnapshotMetricNamespace,
		bootstrap.EtcdSnapshotMetric, bootstrap.EtcdSnapshotMetricDimension, cluster.ClusterName)
	if sent, _ := os.ReadFile(filepath.Join(bucket, "metrics.log")); !strings.Contains(string(sent), metric) {
		t.Errorf("the backup sent no %s metric: %q", bootstrap.EtcdSnapshotMetric, sent)
	}
	l.checkTLSMetrics(took[0])
	// A write after the snapshot, which a restore must not bring back.
	l.put(all, 200, 1)

	// A member whose volume is lost comes back empty, re-registers itself
	// with the healthy majority and gets the data from its peers.
	lost := (oldLeader + 1) % 3
	l.kill(lost)
	must(t, os.RemoveAll(filepath.Join(l.members[lost].host.Root, bootstrap.EtcdDataDir)))
	l.start(lost)
	replaced := l.waitFor("replaced member healthy with all data", 60*time.Second, func() error {
		if err := l.healthy(all); err != nil {
			return err
		}
		return l.expectKeys(l.members[lost].spec.ClientURL(), true, 201)
	})
	t.Logf("MEASURED: %s lost its volume and rejoined as a replacement in %s", l.members[lost].spec.Name, replaced.Round(time.Millisecond))

	// Restore: the snapshot goes into a fresh 3-member cluster, with the
	// keys as they were when it was taken.
	for i := range l.members {
		l.kill(i)
	}
	fresh := newEtcdLab(t, fmt.Sprintf("kr%d", os.Getpid()%10000), cluster, ca, bucket)
	snapshotURL := "s3://backups/snapshots/" + filepath.Base(snapshots[0])
	for i := range fresh.members {
		if out, err := fresh.script(i, "etcd-restore.sh", snapshotURL, "kubeha-lab-restore-1"); err != nil {
			t.Fatalf("etcd-restore.sh on %s: %v\n%s", fresh.members[i].spec.Name, err, out)
		}
	}
	for i := range fresh.members {
		fresh.start(i)
	}
	restored := fresh.waitFor("restored cluster healthy", 60*time.Second, func() error {
		if err := fresh.healthy(fresh.endpoints()); err != nil {
			return err
		}
		return fresh.expectKeys(fresh.endpoints(), false, 200)
	})
	t.Logf("MEASURED: snapshot restored into a fresh 3-member cluster, healthy with all 200 keys in %s", restored.Round(time.Millisecond))
}

// checkTLSMetrics reads every member's TLS metrics port with a client
// certificate, as Prometheus does: each serves the metrics kubeha's alerts
// use, and the member that took the snapshot counts its Snapshot call. The
// port refuses a client without a certificate.
func (l *etcdLab) checkTLSMetrics(snapshotter string) {
	l.t.Helper()
	pkiDir := bootstrap.EtcdPKIDir
	for _, m := range l.members {
		url := fmt.Sprintf("https://%s:%d/metrics", m.spec.DNSName, bootstrap.EtcdTLSMetricsPort)
		out, err := l.client.Command(nil, "curl", "-sSf", "--cacert", pkiDir+"/ca.crt", "--cert", pkiDir+"/client.crt", "--key", pkiDir+"/client.key", url).CombinedOutput()
		if err != nil {
			l.t.Errorf("%s: %v\n%s", url, err, tail(string(out), 5))
			continue
		}
		for _, metric := range addons.AlertedEtcdMetrics {
			if !strings.Contains(string(out), "\n"+metric+"{") && !strings.Contains(string(out), "\n"+metric+" ") {
				l.t.Errorf("%s serves no %s, which an alert uses", url, metric)
			}
		}
		snapshot := `grpc_server_handled_total{grpc_code="OK",grpc_method="Snapshot",grpc_service="etcdserverpb.Maintenance",grpc_type="server_stream"} 1`
		if m.spec.Name == snapshotter && !strings.Contains(string(out), snapshot) {
			l.t.Errorf("%s does not count the snapshot it took (%s)", url, snapshot)
		}
		if out, err := l.client.Command(nil, "curl", "-sSf", "--cacert", pkiDir+"/ca.crt", url).CombinedOutput(); err == nil {
			l.t.Errorf("%s answered a client without a certificate:\n%s", url, tail(string(out), 3))
		}
	}
}
