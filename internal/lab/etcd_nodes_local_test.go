package lab

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/program"
	"github.com/kubeha/kubeha/internal/tools"
)

// TestEtcdNodesBootFromTheirUserData boots the dev stack's three etcd
// members as EC2 would: each a Debian 12 system container in its zone,
// running the user-data of its launch template byte for byte, against
// the AWS double holding what the program declared. Nothing runs inside
// by hand. The members install etcd from the asset bucket, attach their
// volumes, register their DNS names, fetch their certificates and form a
// cluster; what cloud-init ran is what the launch template holds.
func TestEtcdNodesBootFromTheirUserData(t *testing.T) {
	rootfs := needNodes(t)
	if err := tools.Missing(EtcdBinaries...); err != nil {
		tools.Unavailable(t, err.Error())
	}
	toolsDir, _ := tools.Dir()
	cache, _ := tools.CacheDir()
	assets, err := LocalAssets(toolsDir, rootfs, filepath.Join(cache, "assets"), bootstrap.PinnedKubernetesVersion, bootstrap.EtcdVersion)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := config.ReadStackFile("../../stacks/Pulumi.dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := mockrun.Run("kubeha", "dev", raw, program.StackWith(raw, func(args *components.ClusterArgs) {
		args.Assets = assets
		// No add-on set: its chart archives come from their repositories,
		// and only etcd boots here (the rehearsal stands in for the charts).
		args.Addons.Applier = components.ApplierPulumi
	}))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	l, err := netlab.New("khen", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		if left := l.Namespaces(); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	if err := l.AddNetwork("awsnet", "10.62.200.1"); err != nil {
		t.Fatal(err)
	}
	if err := l.ConnectMachine("10.62.254.2", "10.62.254.1", "10.62.0.0/16"); err != nil {
		t.Fatal(err)
	}
	cloud, err := StartCloud(l, "awsnet", "10.62.200.2", cfg.Region, filepath.Join(dir, "cloud"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cloud.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := cloud.Declare(rec.Resources()); err != nil {
		t.Fatal(err)
	}

	members := bootstrap.EtcdMembers(cfg.ClusterName, cfg.Zones, cfg.Etcd.Members)
	groups := make([]*NodeGroup, len(members))
	start := time.Now()
	for i, m := range members {
		network := fmt.Sprintf("zone%d", i)
		if err := l.AddNetwork(network, fmt.Sprintf("10.62.%d.1", i+1)); err != nil {
			t.Fatal(err)
		}
		host, err := l.AddHostOn(network, m.Name, fmt.Sprintf("10.62.%d.11", i+1), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		userData, err := UserData(rec.Resources(), bootstrap.EtcdMemberTag, m.Name)
		if err != nil {
			t.Fatal(err)
		}
		groups[i] = cloud.NewNodeGroup(rootfs, m.Name, m.Zone, host, userData)
		if err := groups[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			result, err := g.Instance.WaitCloudInit(4 * time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if len(result.Errors) != 0 {
				t.Errorf("%s: cloud-init errors %v\n%s", g.Name, result.Errors, g.Instance.ConsoleTail(40))
			}
			// cloud-init keeps the user-data it was given, as given.
			ran, err := g.Instance.RanUserData()
			if err != nil || !bytes.Equal(ran, g.UserData) {
				t.Errorf("%s: cloud-init ran %d bytes (%v), not the launch template's %d", g.Name, len(ran), err, len(g.UserData))
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("MEASURED: 3 etcd members booted from their launch templates, cloud-init done on all in %.1fs", time.Since(start).Seconds())

	client := etcdHealthClient(t, rec)
	took, err := WaitFor(t.Context(), "3 healthy etcd members", 4*time.Minute, func() error {
		for _, m := range members {
			if err := memberHealthy(client, cloud.Resolve(m.DNSName), m.DNSName); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, g := range groups {
			t.Logf("%s:\n%s", g.Name, g.Instance.ConsoleTail(30))
		}
		t.Fatal(err)
	}
	t.Logf("MEASURED: etcd whole %.1fs after the instances launched (%.1fs after cloud-init)", time.Since(start).Seconds(), took.Seconds())
	// Each first boot, a unit of its own, completes its launch hook once
	// its member is a healthy voter, and never runs again.
	if _, err := WaitFor(t.Context(), "every member in service", time.Minute, func() error {
		for _, g := range groups {
			if err := bootstrapped(g, "launch hook of "+g.Instance.ID+" in "+g.Name+": CONTINUE"); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED: every member in service (launch hook completed) %.1fs after the instances launched", time.Since(start).Seconds())

	for _, m := range members {
		if ips := cloud.Resolve(m.DNSName); len(ips) != 1 {
			t.Errorf("%s resolves to %v, want its instance's address", m.DNSName, ips)
		}
	}
	served := map[string]int{}
	for _, call := range cloud.Calls() {
		served[call.Service+" "+call.Action]++
	}
	for _, want := range []string{"ec2 AttachVolume", "ec2 DescribeVolumes", "route53 ChangeResourceRecordSets", "secretsmanager GetSecretValue", "s3 GetObject"} {
		if served[want] < len(members) {
			t.Errorf("the double served %d %s, want one per member at least (served: %v)", served[want], want, served)
		}
	}

	// etcd's ports answer only clients with a certificate from the etcd CA.
	for _, m := range members {
		ip := cloud.Resolve(m.DNSName)[0]
		for _, port := range []int{bootstrap.EtcdClientPort, bootstrap.EtcdTLSMetricsPort} {
			if err := refusesClientWithoutCert(client, ip, m.DNSName, port); err != nil {
				t.Error(err)
			}
		}
	}
	kv := etcdKV{client: client, cloud: cloud}
	for k := range 100 {
		if err := kv.put(members[k%3], key(k), value(k)); err != nil {
			t.Fatal(err)
		}
	}
	bucket, _ := checkBackup(t, rec, cloud, groups, client, members, cfg.ClusterName)
	checkCertRefresh(t, cloud, groups, cfg.ClusterName)
	// Once every member is healthy, the cluster marks itself formed, in
	// the backup bucket where snapshot expiry never reaches. What a member
	// that lost its volume, and a restore, do with it is drilled on the
	// whole cluster by the rehearsal (drills b, g and h).
	if _, err := WaitFor(t.Context(), "the cluster's marker", time.Minute, func() error {
		_, err := cloud.Object(bucket, bootstrap.EtcdClusterMarkerKey)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// bootstrapped is nil once the group's instance is in service and its
// first boot logged that it is done, having logged want on the way.
func bootstrapped(g *NodeGroup, want string) error {
	if !g.InService() {
		return fmt.Errorf("%s is not in service", g.Name)
	}
	if log := g.BootstrapLog(); !strings.Contains(log, want) || !strings.Contains(log, "bootstrap done in") {
		return fmt.Errorf("%s: kubeha-bootstrap did not log %q and done:\n%s", g.Name, want, log)
	}
	return nil
}

func key(k int) string   { return fmt.Sprintf("/kubeha-test/%05d", k) }
func value(k int) string { return fmt.Sprintf("value-%d", k) }

// etcdKV reads and writes keys through a member's JSON gateway on its
// client port, as any client with a certificate from the etcd CA.
type etcdKV struct {
	client *http.Client
	cloud  *Cloud
}

func (kv etcdKV) call(m bootstrap.EtcdMember, path string, request, answer any) error {
	ips := kv.cloud.Resolve(m.DNSName)
	if len(ips) == 0 {
		return fmt.Errorf("%s does not resolve", m.DNSName)
	}
	body, err := ask(kv.client, ips[0], m.DNSName, bootstrap.EtcdClientPort, path, request)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(body), answer)
}

func (kv etcdKV) put(m bootstrap.EtcdMember, key, value string) error {
	var answer struct{ Header map[string]any }
	if err := kv.call(m, "/v3/kv/put", map[string][]byte{"key": []byte(key), "value": []byte(value)}, &answer); err != nil {
		return fmt.Errorf("put %s on %s: %w", key, m.Name, err)
	}
	return nil
}

// checkCertRefresh starts each member's certificate refresh, as its timer
// does: with the secret unchanged it rewrites nothing, and it reports the
// days left on the member's certificates, about two years, for the
// expiry alarm.
func checkCertRefresh(t *testing.T, cloud *Cloud, groups []*NodeGroup, clusterName string) {
	t.Helper()
	for _, g := range groups {
		if out, err := g.Instance.Exec("systemctl", "start", bootstrap.EtcdCertRefreshUnit); err != nil {
			t.Fatalf("%s: %v %s\n%s", g.Name, err, out, g.UnitLog(bootstrap.EtcdCertRefreshUnit))
		}
		if log := g.UnitLog(bootstrap.EtcdCertRefreshUnit); strings.Contains(log, "wrote ") {
			t.Errorf("%s: the refresh rewrote an unchanged certificate:\n%s", g.Name, log)
		}
	}
	var days []float64
	for _, m := range cloud.Metrics() {
		if m.Name == bootstrap.CertDaysLeftMetric && m.Dimensions[bootstrap.EtcdSnapshotMetricDimension] == clusterName {
			days = append(days, m.Value)
		}
	}
	if len(days) < len(groups) || slices.Min(days) < 700 || slices.Max(days) > 731 {
		t.Errorf("%s reported %v, want about 730 days from each member", bootstrap.CertDaysLeftMetric, days)
	}
	t.Logf("MEASURED: each member's certificate refresh reported %v days left", days)
}

// checkBackup starts the snapshot timer's service on every member, as the
// timer does: exactly one snapshot, the leader's, lands in the backup
// bucket as a snapshot etcdutl reads, it is counted for the snapshot-age
// alarm, and every member serves the metrics kubeha's alerts use.
func checkBackup(t *testing.T, rec *mockrun.Recorder, cloud *Cloud, groups []*NodeGroup, client *http.Client, members []bootstrap.EtcdMember, clusterName string) (bucket, snapshot string) {
	t.Helper()
	for _, g := range groups {
		if _, err := g.Instance.Exec("systemctl", "start", "kubeha-etcd-backup.service"); err != nil {
			t.Fatal(err)
		}
	}
	bucket, err := DeclaredBucket(rec.Resources(), "-backups")
	if err != nil {
		t.Fatal(err)
	}
	snapshots, err := cloud.List(bucket, "snapshots/")
	if err != nil || len(snapshots) != 1 {
		t.Fatalf("the backup bucket %s holds %v (%v); want exactly one snapshot, from the leader", bucket, snapshots, err)
	}
	data, err := cloud.Object(bucket, snapshots[0])
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	etcdutl, _ := tools.Path("etcdutl")
	if out, err := exec.Command(etcdutl, "snapshot", "status", file, "-w", "json").CombinedOutput(); err != nil {
		t.Errorf("%s is no etcd snapshot: %v %s", snapshots[0], err, out)
	}
	counted := 0
	for _, m := range cloud.Metrics() {
		if m.Namespace == bootstrap.EtcdSnapshotMetricNamespace && m.Name == bootstrap.EtcdSnapshotMetric &&
			m.Dimensions[bootstrap.EtcdSnapshotMetricDimension] == clusterName && m.Value == 1 {
			counted++
		}
	}
	if counted != 1 {
		t.Errorf("%d %s data points for %s in CloudWatch, want 1 per snapshot", counted, bootstrap.EtcdSnapshotMetric, clusterName)
	}
	served := `grpc_server_handled_total{grpc_code="OK",grpc_method="Snapshot",grpc_service="etcdserverpb.Maintenance",grpc_type="server_stream"} 1`
	for _, m := range members {
		metrics, err := ask(client, cloud.Resolve(m.DNSName)[0], m.DNSName, bootstrap.EtcdTLSMetricsPort, "/metrics", nil)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, name := range addons.AlertedEtcdMetrics {
			if !strings.Contains(metrics, "\n"+name+"{") && !strings.Contains(metrics, "\n"+name+" ") {
				t.Errorf("%s serves no %s, which an alert uses", m.Name, name)
			}
		}
		leader := strings.Contains(metrics, "\netcd_server_is_leader 1\n")
		if took := strings.Contains(metrics, served); took != leader || took != strings.HasSuffix(snapshots[0], "-"+m.Name+".db") {
			t.Errorf("%s: leader %v, served the snapshot %v, named in %s: want all three or none", m.Name, leader, took, snapshots[0])
		}
	}
	return bucket, snapshots[0]
}

// refusesClientWithoutCert checks that a TLS client with no certificate
// gets nothing from a member's port.
func refusesClientWithoutCert(withCert *http.Client, ip, name string, port int) error {
	transport := withCert.Transport.(*http.Transport).Clone()
	transport.TLSClientConfig.Certificates = nil
	anonymous := &http.Client{Timeout: withCert.Timeout, Transport: transport}
	if body, err := ask(anonymous, ip, name, port, "/health", nil); err == nil {
		return fmt.Errorf("%s:%d answered a client without a certificate: %s", name, port, body)
	}
	if _, err := ask(withCert, ip, name, port, "/health", nil); err != nil {
		return fmt.Errorf("with the client certificate: %v", err)
	}
	return nil
}

// ask asks a member's port, by its DNS name, at ip: a GET, or a POST of
// request as JSON.
func ask(client *http.Client, ip, name string, port int, path string, request any) (string, error) {
	transport := client.Transport.(*http.Transport).Clone()
	transport.TLSClientConfig.ServerName = name
	c := &http.Client{Timeout: client.Timeout, Transport: transport}
	url := fmt.Sprintf("https://%s:%d%s", ip, port, path)
	var resp *http.Response
	var err error
	if request == nil {
		resp, err = c.Get(url)
	} else {
		data, _ := json.Marshal(request)
		resp, err = c.Post(url, "application/json", bytes.NewReader(data))
	}
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s:%d%s: HTTP %d %s", name, port, path, resp.StatusCode, body)
	}
	return string(body), err
}

// etcdHealthClient is the health-check identity the program stored for
// control-plane nodes (the etcd client secret), as Prometheus and the
// rehearsal use it.
func etcdHealthClient(t *testing.T, rec *mockrun.Recorder) *http.Client {
	t.Helper()
	files, err := DeclaredSecret(rec.Resources(), "-etcd-client")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(files["healthcheck.crt"]), []byte(files["healthcheck.key"]))
	if err != nil {
		t.Fatalf("the etcd client secret's health-check pair: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(files["ca.crt"]))
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots}}}
}

// memberHealthy asks a member's TLS metrics port whether it is healthy.
func memberHealthy(client *http.Client, ips []string, name string) error {
	if len(ips) == 0 {
		return fmt.Errorf("%s does not resolve yet", name)
	}
	body, err := ask(client, ips[0], name, bootstrap.EtcdTLSMetricsPort, "/health", nil)
	if err == nil && !strings.Contains(body, `"health":"true"`) {
		err = fmt.Errorf("%s: %s", name, body)
	}
	return err
}
