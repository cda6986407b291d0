package bootstrap

import (
	"embed"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// The pinned etcd release nodes install, and its published SHA-256.
const (
	EtcdVersion = "v3.6.6"
	etcdSHA256  = "887afaa4a99f22d802ccdfbe65730a5e79aa5c9ce2c8799c67e9d804c50ecedb"
)

// Paths on an etcd member. The data volume is mounted at EtcdVolumeMount;
// data lives one level down so that restores can move it aside on the
// same filesystem.
const (
	EtcdVolumeMount = "/var/lib/etcd"
	EtcdDataDir     = "/var/lib/etcd/data"
	EtcdPKIDir      = "/etc/etcd/pki"
	EtcdConfigPath  = "/etc/etcd/etcd.yaml"
	EtcdEnvPath     = "/etc/kubeha/etcd.env"
	ScriptDir       = "/usr/local/lib/kubeha"
	EtcdClientPort  = 2379
	EtcdPeerPort    = 2380
	etcdMetricsPort = 2381
	// EtcdSnapshotMetric, in EtcdSnapshotMetricNamespace with a Cluster
	// dimension, is sent by etcd-backup.sh after each upload to S3.
	EtcdSnapshotMetricNamespace = "kubeha"
	EtcdSnapshotMetric          = "EtcdSnapshotUploaded"
	// EtcdTLSMetricsPort serves /metrics and /health to monitoring, over
	// TLS with a client certificate, and nothing else: no data API.
	EtcdTLSMetricsPort = 2382
	etcdBackupPrefix   = "snapshots"
)

//go:embed scripts/*.sh
var scripts embed.FS

// EtcdMember is one member's identity, stable across instance replacement.
type EtcdMember struct {
	Name    string // etcd-a
	Zone    string
	DNSName string // etcd-a.<cluster>.internal
}

// PeerURL and ClientURL are the member's advertised URLs.
func (m EtcdMember) PeerURL() string { return fmt.Sprintf("https://%s:%d", m.DNSName, EtcdPeerPort) }
func (m EtcdMember) ClientURL() string {
	return fmt.Sprintf("https://%s:%d", m.DNSName, EtcdClientPort)
}

// EtcdCluster is the rendered etcd cluster: what every member shares.
type EtcdCluster struct {
	ClusterName string
	Members     []EtcdMember
	// HeartbeatMs and ElectionMs: cross-zone round trips in one region are
	// ~1-2 ms, far below etcd's defaults, so the defaults (100/1000) hold; a
	// 10x ratio absorbs EBS fsync stalls without false elections.
	HeartbeatMs int
	ElectionMs  int
	// QuotaBytes caps the backend database; half the data volume at most.
	QuotaBytes int64
	// BackupIntervalMinutes between leader-only snapshots.
	BackupIntervalMinutes int
}

// EtcdDomain is the private DNS zone members register in.
func EtcdDomain(cluster string) string { return cluster + ".internal" }

// EtcdMembers spreads count members round-robin over zones, named etcd-a,
// etcd-b, ... in order.
func EtcdMembers(cluster string, zones []string, count int) []EtcdMember {
	members := make([]EtcdMember, count)
	for i := range members {
		name := fmt.Sprintf("etcd-%c", 'a'+i)
		members[i] = EtcdMember{Name: name, Zone: zones[i%len(zones)], DNSName: name + "." + EtcdDomain(cluster)}
	}
	return members
}

// NewEtcdCluster renders a cluster with kubeha's defaults for the settings
// that have no config key.
func NewEtcdCluster(cluster string, zones []string, members, volumeGiB, backupIntervalMinutes int) EtcdCluster {
	quota := int64(volumeGiB) << 30 / 2
	if quota > 8<<30 {
		quota = 8 << 30 // etcd's largest recommended quota
	}
	return EtcdCluster{
		ClusterName:           cluster,
		Members:               EtcdMembers(cluster, zones, members),
		HeartbeatMs:           100,
		ElectionMs:            1000,
		QuotaBytes:            quota,
		BackupIntervalMinutes: backupIntervalMinutes,
	}
}

// InitialCluster is etcd's --initial-cluster value.
func (c EtcdCluster) InitialCluster() string {
	var parts []string
	for _, m := range c.Members {
		parts = append(parts, m.Name+"="+m.PeerURL())
	}
	return strings.Join(parts, ",")
}

// ClientEndpoints are the members' client URLs, comma-separated.
func (c EtcdCluster) ClientEndpoints() string {
	var urls []string
	for _, m := range c.Members {
		urls = append(urls, m.ClientURL())
	}
	return strings.Join(urls, ",")
}

// Config renders etcd's configuration file for member m. The start script
// sets initial-cluster-state; everything else is fixed here.
func (c EtcdCluster) Config(m EtcdMember) (string, error) {
	tls := func(cert, key string) map[string]any {
		return map[string]any{
			"cert-file":        EtcdPKIDir + "/" + cert,
			"key-file":         EtcdPKIDir + "/" + key,
			"trusted-ca-file":  EtcdPKIDir + "/ca.crt",
			"client-cert-auth": true,
			"auto-tls":         false,
		}
	}
	// yaml.Node keeps the keys in this order, which reads like etcd's sample.
	cfg := []struct {
		key   string
		value any
	}{
		{"name", m.Name},
		{"data-dir", EtcdDataDir},
		{"listen-peer-urls", fmt.Sprintf("https://0.0.0.0:%d", EtcdPeerPort)},
		{"listen-client-urls", fmt.Sprintf("https://0.0.0.0:%d", EtcdClientPort)},
		// Plain HTTP /health and /metrics on loopback only, for local probes;
		// mutual TLS on EtcdTLSMetricsPort for Prometheus.
		{"listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d,https://0.0.0.0:%d", etcdMetricsPort, EtcdTLSMetricsPort)},
		{"initial-advertise-peer-urls", m.PeerURL()},
		{"advertise-client-urls", m.ClientURL()},
		{"initial-cluster", c.InitialCluster()},
		{"initial-cluster-token", c.ClusterName + "-etcd"},
		{"initial-cluster-state", "new"},
		{"heartbeat-interval", c.HeartbeatMs},
		{"election-timeout", c.ElectionMs},
		{"quota-backend-bytes", c.QuotaBytes},
		{"auto-compaction-mode", "periodic"},
		{"auto-compaction-retention", "1h"},
		{"snapshot-count", 10000},
		{"client-transport-security", tls("server.crt", "server.key")},
		{"peer-transport-security", tls("peer.crt", "peer.key")},
		{"tls-min-version", "TLS1.2"},
		{"logger", "zap"},
		{"log-level", "info"},
	}
	var doc yaml.Node
	doc.Kind = yaml.MappingNode
	for _, kv := range cfg {
		var k, v yaml.Node
		k.SetString(kv.key)
		if err := v.Encode(kv.value); err != nil {
			return "", err
		}
		doc.Content = append(doc.Content, &k, &v)
	}
	out, err := yaml.Marshal(&doc)
	return "# etcd member " + m.Name + ", rendered by kubeha. initial-cluster-state is set at start.\n" + string(out), err
}

// EtcdNodeParams are the per-member values AWS assigns at deploy time.
type EtcdNodeParams struct {
	Member       EtcdMember
	Region       string
	VolumeID     string
	HostedZoneID string
	SecretID     string // Secrets Manager secret with ca.crt, server.*, peer.*
	BackupBucket string
	KMSKeyID     string
}

// Node renders one member's first boot.
func (c EtcdCluster) Node(p EtcdNodeParams) (Node, error) {
	config, err := c.Config(p.Member)
	if err != nil {
		return Node{}, err
	}
	env := strings.Join([]string{
		"# etcd member settings, rendered by kubeha.",
		"CLUSTER_NAME=" + c.ClusterName,
		"MEMBER_NAME=" + p.Member.Name,
		"MEMBER_DNS=" + p.Member.DNSName,
		"INITIAL_CLUSTER=" + c.InitialCluster(),
		"CLIENT_ENDPOINTS=" + c.ClientEndpoints(),
		"AWS_DEFAULT_REGION=" + p.Region,
		"VOLUME_ID=" + p.VolumeID,
		"HOSTED_ZONE_ID=" + p.HostedZoneID,
		"SECRET_ID=" + p.SecretID,
		"BACKUP_URL=" + c.BackupURL(p.BackupBucket),
		"KMS_KEY_ID=" + p.KMSKeyID,
		"ETCD_VERSION=" + EtcdVersion,
		"ETCD_SHA256=" + etcdSHA256,
		fmt.Sprintf("ETCD_DOWNLOAD_URL=https://github.com/etcd-io/etcd/releases/download/%[1]s/etcd-%[1]s-linux-amd64.tar.gz", EtcdVersion),
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"",
	}, "\n")
	node := Node{
		Packages: []string{"awscli", "jq", "curl"},
		Files: []File{
			{Path: EtcdEnvPath, Content: env, Mode: "0644"},
			{Path: EtcdConfigPath, Content: config, Mode: "0644"},
			{Path: "/etc/systemd/system/etcd.service", Content: etcdService, Mode: "0644"},
			{Path: "/etc/systemd/system/kubeha-etcd-backup.service", Content: backupService, Mode: "0644"},
			{Path: "/etc/systemd/system/kubeha-etcd-backup.timer", Content: fmt.Sprintf(backupTimer, c.BackupIntervalMinutes), Mode: "0644"},
		},
		Commands: [][]string{{ScriptDir + "/etcd-bootstrap.sh"}},
	}
	for _, name := range []string{"etcd-common.sh", "etcd-bootstrap.sh", "etcd-start.sh", "etcd-backup.sh", "etcd-restore.sh"} {
		script, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			return Node{}, err
		}
		node.Files = append(node.Files, File{Path: ScriptDir + "/" + name, Content: string(script), Mode: "0755"})
	}
	node.Files = append(node.Files, File{Path: "/usr/local/sbin/kubeha-etcd-restore", Content: "#!/bin/sh\nexec " + ScriptDir + "/etcd-restore.sh \"$@\"\n", Mode: "0755"})
	return node, nil
}

// BackupURL is where snapshots go.
func (c EtcdCluster) BackupURL(bucket string) string {
	return "s3://" + bucket + "/" + etcdBackupPrefix
}

const etcdService = `[Unit]
Description=etcd member (kubeha)
Documentation=https://etcd.io/docs/v3.6/
Wants=network-online.target
After=network-online.target
RequiresMountsFor=/var/lib/etcd

[Service]
Type=notify
EnvironmentFile=/etc/kubeha/etcd.env
ExecStart=/usr/local/lib/kubeha/etcd-start.sh
Restart=always
RestartSec=5
TimeoutStartSec=0
LimitNOFILE=65536
NoNewPrivileges=true
ProtectHome=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
`

const backupService = `[Unit]
Description=etcd snapshot to S3, taken on the leader only (kubeha)
After=etcd.service

[Service]
Type=oneshot
EnvironmentFile=/etc/kubeha/etcd.env
ExecStart=/usr/local/lib/kubeha/etcd-backup.sh
`

const backupTimer = `[Unit]
Description=etcd snapshots to S3 (kubeha)

[Timer]
OnBootSec=5min
OnUnitActiveSec=%dmin
RandomizedDelaySec=60

[Install]
WantedBy=timers.target
`
