package bootstrap_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

// etcdLab is a rendered etcd cluster running in network namespaces.
type etcdLab struct {
	t       *testing.T
	net     *netlab.Lab
	cluster bootstrap.EtcdCluster
	members []*lab.Member
	client  *netlab.Host // holds the API servers' client certificate
}

// requireLab stops the test, loudly, where the lab cannot run or a pinned
// binary it needs is not built.
func requireLab(t *testing.T, binaries ...string) {
	t.Helper()
	if why := netlab.Available(); why != "" {
		tools.Unavailable(t, "the lab "+why)
	}
	if err := tools.Missing(binaries...); err != nil {
		tools.Unavailable(t, err.Error())
	}
}

// labEtcdParams are what AWS would give member m, for the lab.
func labEtcdParams(m bootstrap.EtcdMember) bootstrap.EtcdNodeParams {
	return bootstrap.EtcdNodeParams{Member: m, Region: "eu-west-1", VolumeID: "vol-local",
		HostedZoneID: "ZLOCAL", SecretID: "local", BackupBucket: "backups", KMSKeyID: "local"}
}

// newEtcdLab lays out a 3-member cluster, each member's files,
// certificates and binaries, and a client host, without starting
// anything. When the test fails, it shows each member's log.
func newEtcdLab(t *testing.T, prefix string, cluster bootstrap.EtcdCluster, ca *pki.Pair, store string) *etcdLab {
	t.Helper()
	nl, err := netlab.New(prefix, t.TempDir())
	must(t, err)
	l := &etcdLab{t: t, net: nl, cluster: cluster}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range l.members {
				t.Logf("%s log tail:\n%s", m.Name, m.LogTail("etcd", 15))
			}
		}
		if err := nl.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if left := nl.Namespaces(); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	hosts := map[string]string{}
	for i, m := range cluster.Members {
		hosts[m.DNSName] = fmt.Sprintf("10.200.0.%d", 11+i)
	}
	for _, m := range cluster.Members {
		member, err := lab.AddEtcdMember(nl, netlab.FlatNetwork, hosts[m.DNSName], hosts, cluster, labEtcdParams(m), ca, store)
		must(t, err)
		l.members = append(l.members, member)
	}
	l.client, err = nl.AddHost("client", "10.200.0.20", lab.EtcdBinds, hosts)
	must(t, err)
	must(t, lab.WriteEtcdCerts(l.client.Root, ca, map[string]pki.Spec{"client": pki.EtcdAPIServerClient()}))
	must(t, lab.InstallBinaries(l.client.Root, store, lab.EtcdBinaries...))
	return l
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (l *etcdLab) start(i int) { must(l.t, l.members[i].Start()) }

// waitFor polls ok until it passes, and says how long that took; it fails
// the test after limit, how long to wait before giving up, which is not
// the bound a measured time is held to.
func (l *etcdLab) waitFor(what string, limit time.Duration, ok func() error) time.Duration {
	l.t.Helper()
	took, err := lab.WaitFor(l.t.Context(), what, limit, ok)
	must(l.t, err)
	return took
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
			urls = append(urls, m.Spec.ClientURL())
		}
	}
	return strings.Join(urls, ",")
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
				if s.Endpoint == m.Spec.ClientURL() {
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
// same specs the EtcdCluster component gives pulumi-tls. Every measured
// time is held to the bound its configuration implies (lab/bounds.go); the
// waits only say when to give up.
func TestEtcdClusterLocal(t *testing.T) {
	requireLab(t, lab.EtcdBinaries...)
	l, ca, store := newLabEtcd(t, "ke")
	cluster := l.cluster
	all := l.endpoints()
	const giveUp = time.Minute

	// The cluster forms.
	for i := range l.members {
		l.start(i)
	}
	formed := l.waitFor("3-member cluster healthy", giveUp, func() error { return l.healthy(all) })
	lab.Within(t, "3-member cluster formed", formed, lab.EtcdFormation(cluster))

	// A client without a certificate is refused at the TLS handshake; the
	// same request with the client certificate is answered.
	url := l.members[0].Spec.ClientURL() + "/version"
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
	victim := l.members[oldLeader]
	victim.Kill()
	survivors := l.endpoints(oldLeader)
	reelected := l.waitFor("new leader", giveUp, func() error {
		_, id, err := l.leader(survivors)
		if err == nil && id == oldID {
			return fmt.Errorf("old leader %x still reported", id)
		}
		return err
	})
	lab.Within(t, "new leader elected after leader "+victim.Name+" was killed", reelected, lab.EtcdNewLeader(cluster))
	failures := l.put(survivors, 100, 100)
	t.Logf("with %s down: 100 writes acknowledged, %d attempts retried", victim.Name, failures)
	must(t, l.expectKeys(survivors, false, 200))

	// The killed member restarts on its own data dir and catches up.
	l.start(oldLeader)
	rejoined := l.waitFor("killed member back", giveUp, func() error {
		if err := l.healthy(all); err != nil {
			return err
		}
		return l.expectKeys(victim.Spec.ClientURL(), true, 200)
	})
	lab.Within(t, victim.Name+" restarted on its data and caught up", rejoined, lab.EtcdRestart(cluster))

	// The backup script takes exactly one snapshot: on the leader.
	var took []string
	for _, m := range l.members {
		out, err := m.Script("etcd-backup.sh")
		must(t, err)
		if strings.Contains(out, "snapshot saved") {
			took = append(took, m.Name)
		}
	}
	snapshots, _ := filepath.Glob(filepath.Join(store, "backups", "snapshots", "*.db"))
	if len(took) != 1 || len(snapshots) != 1 {
		t.Fatalf("backup ran on %v and left %v; want exactly one snapshot, from the leader", took, snapshots)
	}
	// The upload is counted for the snapshot-age alarm, and Prometheus'
	// backup alert sees the snapshot in etcd's own metrics.
	metric := fmt.Sprintf("--namespace %s --metric-name %s --dimensions %s=%s ", bootstrap.EtcdSnapshotMetricNamespace,
		bootstrap.EtcdSnapshotMetric, bootstrap.EtcdSnapshotMetricDimension, cluster.ClusterName)
	if sent, _ := os.ReadFile(filepath.Join(store, "metrics.log")); !strings.Contains(string(sent), metric) {
		t.Errorf("the backup sent no %s metric: %q", bootstrap.EtcdSnapshotMetric, sent)
	}
	l.checkTLSMetrics(took[0])
	// A write after the snapshot, which a restore must not bring back.
	l.put(all, 200, 1)

	// A member whose volume is lost comes back empty, re-registers itself
	// with the healthy majority and gets the data from its peers.
	lost := l.members[(oldLeader+1)%3]
	lost.Kill()
	must(t, os.RemoveAll(filepath.Join(lost.Host.Root, bootstrap.EtcdDataDir)))
	must(t, lost.Start())
	replaced := l.waitFor("replaced member healthy with all data", giveUp, func() error {
		if err := l.healthy(all); err != nil {
			return err
		}
		return l.expectKeys(lost.Spec.ClientURL(), true, 201)
	})
	lab.Within(t, lost.Name+" lost its volume and rejoined as a replacement", replaced, lab.EtcdReplacement(cluster))

	// Restore: the snapshot goes into a fresh 3-member cluster, with the
	// keys as they were when it was taken.
	for _, m := range l.members {
		m.Kill()
	}
	fresh := newEtcdLab(t, fmt.Sprintf("kr%d", os.Getpid()%10000), cluster, ca, store)
	snapshotURL := "s3://backups/snapshots/" + filepath.Base(snapshots[0])
	for _, m := range fresh.members {
		_, err := m.Script("etcd-restore.sh", snapshotURL, "kubeha-lab-restore-1")
		must(t, err)
	}
	for i := range fresh.members {
		fresh.start(i)
	}
	restored := fresh.waitFor("restored cluster healthy", giveUp, func() error {
		if err := fresh.healthy(fresh.endpoints()); err != nil {
			return err
		}
		return fresh.expectKeys(fresh.endpoints(), false, 200)
	})
	lab.Within(t, "snapshot restored into a fresh 3-member cluster, healthy with all 200 keys", restored, lab.EtcdFormation(cluster))
}

// checkTLSMetrics reads every member's TLS metrics port with a client
// certificate, as Prometheus does: each serves the metrics kubeha's alerts
// use, and the member that took the snapshot counts its Snapshot call. The
// port refuses a client without a certificate.
func (l *etcdLab) checkTLSMetrics(snapshotter string) {
	l.t.Helper()
	pkiDir := bootstrap.EtcdPKIDir
	for _, m := range l.members {
		url := fmt.Sprintf("https://%s:%d/metrics", m.Spec.DNSName, bootstrap.EtcdTLSMetricsPort)
		out, err := l.client.Command(nil, "curl", "-sSf", "--cacert", pkiDir+"/ca.crt", "--cert", pkiDir+"/client.crt", "--key", pkiDir+"/client.key", url).CombinedOutput()
		if err != nil {
			l.t.Errorf("%s: %v\n%s", url, err, out[max(0, len(out)-300):])
			continue
		}
		for _, metric := range addons.AlertedEtcdMetrics {
			if !strings.Contains(string(out), "\n"+metric+"{") && !strings.Contains(string(out), "\n"+metric+" ") {
				l.t.Errorf("%s serves no %s, which an alert uses", url, metric)
			}
		}
		snapshot := `grpc_server_handled_total{grpc_code="OK",grpc_method="Snapshot",grpc_service="etcdserverpb.Maintenance",grpc_type="server_stream"} 1`
		if m.Name == snapshotter && !strings.Contains(string(out), snapshot) {
			l.t.Errorf("%s does not count the snapshot it took (%s)", url, snapshot)
		}
		if out, err := l.client.Command(nil, "curl", "-sSf", "--cacert", pkiDir+"/ca.crt", url).CombinedOutput(); err == nil {
			l.t.Errorf("%s answered a client without a certificate:\n%s", url, out[max(0, len(out)-300):])
		}
	}
}
