package lab

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeha/kubeha/components"
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
	assets, err := LocalAssets(toolsDir, filepath.Join(cache, "assets"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := config.ReadStackFile("../../stacks/Pulumi.dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := mockrun.Run("kubeha", "dev", raw, program.StackWith(raw, func(args *components.ClusterArgs) { args.Assets = assets }))
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
	defer l.Close()
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
	took, err := WaitFor(t.Context(), "3 healthy etcd members", 2*time.Minute, func() error {
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
}

// etcdHealthClient is the health-check identity the program stored for
// control-plane nodes (the etcd client secret), as Prometheus and the
// rehearsal use it.
func etcdHealthClient(t *testing.T, rec *mockrun.Recorder) *http.Client {
	t.Helper()
	var files map[string]string
	for _, r := range rec.OfType("aws:secretsmanager/secretVersion:SecretVersion") {
		if strings.HasSuffix(r.Name, "-etcd-client") {
			if err := json.Unmarshal([]byte(r.String("secretString")), &files); err != nil {
				t.Fatal(err)
			}
		}
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
	transport := client.Transport.(*http.Transport).Clone()
	transport.TLSClientConfig.ServerName = name
	c := &http.Client{Timeout: client.Timeout, Transport: transport}
	resp, err := c.Get(fmt.Sprintf("https://%s:%d/health", ips[0], bootstrap.EtcdTLSMetricsPort))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("%s: %d %s", name, resp.StatusCode, body)
	}
	return nil
}
