package bootstrap

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EtcdVersion is the etcd release members run unless the stack's
// etcd.version names another of EtcdReleases.
const EtcdVersion = "v3.6.14"

// EtcdReleases are the etcd releases kubeha pins, with the SHA-256 of
// each one's linux-amd64 archive as its release's SHA256SUMS publishes
// it (recorded in testdata/etcd-checksums.yaml). Each is at least
// kubeadm's MinExternalEtcdVersion (3.5.24) for every supported
// Kubernetes minor. v3.6.6 stays for clusters created at it, which roll
// their members to EtcdVersion (README: roll or upgrade etcd members).
var EtcdReleases = map[string]string{
	"v3.6.6":  "887afaa4a99f22d802ccdfbe65730a5e79aa5c9ce2c8799c67e9d804c50ecedb",
	"v3.6.14": "ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5",
}

// EtcdArchive is the release archive of a pinned etcd version.
func EtcdArchive(version string) (Asset, error) {
	sum, ok := EtcdReleases[version]
	if !ok {
		return Asset{}, fmt.Errorf("kubeha pins no etcd %s", version)
	}
	return Asset{
		Key:    EtcdArchiveKey(version),
		Source: fmt.Sprintf("https://github.com/etcd-io/etcd/releases/download/%[1]s/etcd-%[1]s-linux-amd64.tar.gz", version),
		SHA256: sum,
	}, nil
}

// Paths on an etcd member. The data volume is mounted at EtcdVolumeMount;
// data lives one level down so that restores can move it aside on the
// same filesystem.
const (
	EtcdVolumeMount = "/var/lib/etcd"
	EtcdDataDir     = EtcdVolumeMount + "/data"
	etcdBackupDir   = EtcdVolumeMount + "/backup"
	EtcdPKIDir      = "/etc/etcd/pki"
	EtcdConfigPath  = "/etc/etcd/etcd.yaml"
	// EtcdRuntimeConfigPath is EtcdConfigPath with the
	// initial-cluster-state etcd-start.sh chose.
	EtcdRuntimeConfigPath = "/run/kubeha/etcd.yaml"
	EtcdEnvPath           = "/etc/kubeha/etcd.env"
	// EtcdRecordTTL is the TTL of each member's DNS record, in seconds:
	// short, so peers follow a replaced member quickly.
	EtcdRecordTTL   = 20
	EtcdClientPort  = 2379
	EtcdPeerPort    = 2380
	etcdMetricsPort = 2381
	// EtcdSnapshotMetric, in EtcdSnapshotMetricNamespace with an
	// EtcdSnapshotMetricDimension dimension (the cluster's name), is sent
	// by etcd-backup.sh after each upload to S3.
	EtcdSnapshotMetricNamespace = "kubeha"
	EtcdSnapshotMetric          = "EtcdSnapshotUploaded"
	EtcdSnapshotMetricDimension = "Cluster"
	// EtcdTLSMetricsPort serves /metrics and /health to monitoring, over
	// TLS with a client certificate, and nothing else: no data API.
	EtcdTLSMetricsPort = 2382
	etcdBackupPrefix   = "snapshots"
	// EtcdClusterMarkerKey, in the backup bucket, says the cluster formed:
	// written once every member is healthy, never expired.
	EtcdClusterMarkerKey = "cluster/created"
	// etcdRestoreBumpRevision is how far a restore moves revisions past the
	// snapshot's: more than a cluster writes between two snapshots, as
	// Kubernetes' restore procedure advises.
	etcdRestoreBumpRevision = 1000000000
	// EtcdRestoreCommand runs etcd-restore.sh with the member's settings
	// (README: etcd restore).
	EtcdRestoreCommand = "/usr/local/sbin/kubeha-etcd-restore"
	// EtcdHoldFile, while it exists, keeps etcd.service from starting at
	// all (a first boot's retry, Restart=always): `kubeha-etcd-restore
	// hold` makes it, `release` removes it, a reboot clears it.
	EtcdHoldFile = "/run/kubeha/etcd.hold"
	// EtcdMemberAddRetry is how often etcd-start.sh asks the cluster to
	// take a replacement member back until it does: etcd refuses while the
	// member asked has not been connected to all the others for 5 s.
	EtcdMemberAddRetry = 2 * time.Second
)

// A member's certificate files in EtcdPKIDir, named as in its secret.
const (
	etcdCACert     = "ca.crt"
	etcdServerCert = "server.crt"
	etcdServerKey  = "server.key"
	etcdPeerCert   = "peer.crt"
	etcdPeerKey    = "peer.key"
)

// EtcdMemberSecretFiles names the entries of a member's secret, each
// written to EtcdPKIDir under its name. The EtcdCluster component fills
// exactly these.
var EtcdMemberSecretFiles = []string{etcdCACert, etcdServerCert, etcdServerKey, etcdPeerCert, etcdPeerKey}

// EtcdMemberTag names the member on its volume, instance and launch
// template.
const EtcdMemberTag = "kubeha.io/etcd-member"

// ClusterTagKey is the tag every resource of cluster carries, "owned".
func ClusterTagKey(cluster string) string { return "kubernetes.io/cluster/" + cluster }

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
	// BootstrapDeadline is how long a member's first boot may take before
	// it gives the instance up; zero means the package's BootstrapDeadline.
	BootstrapDeadline time.Duration
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
			"trusted-ca-file":  EtcdPKIDir + "/" + etcdCACert,
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
		{"client-transport-security", tls(etcdServerCert, etcdServerKey)},
		{"peer-transport-security", tls(etcdPeerCert, etcdPeerKey)},
		{"tls-min-version", "TLS1.2"},
		{"cipher-suites", TLSCipherSuites},
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
	// AssetBucket holds Etcd, etcd's release archive.
	AssetBucket string
	Etcd        Asset
}

// Node renders one member's first boot.
func (c EtcdCluster) Node(p EtcdNodeParams) (Node, error) {
	config, err := c.Config(p.Member)
	if err != nil {
		return Node{}, err
	}
	service, backup, timer := c.units()
	promote, promoteTimer := promoteUnits()
	refresh, refreshTimer := etcdCertRefreshUnits()
	leave, leaveTimer := etcdLeaveUnits()
	env := []envVar{
		{"CLUSTER_NAME", c.ClusterName},
		{"MEMBER_NAME", p.Member.Name},
		{"MEMBER_DNS", p.Member.DNSName},
		{"MEMBER_DNS_TTL", fmt.Sprint(EtcdRecordTTL)},
		{"MEMBER_CLIENT_URL", p.Member.ClientURL()},
		{"MEMBER_PEER_URL", p.Member.PeerURL()},
		// The member itself, over loopback: its server certificate holds
		// 127.0.0.1.
		{"LOCAL_CLIENT_URL", fmt.Sprintf("https://127.0.0.1:%d", EtcdClientPort)},
		{"INITIAL_CLUSTER", c.InitialCluster()},
		{"CLIENT_ENDPOINTS", c.ClientEndpoints()},
		{"AWS_DEFAULT_REGION", p.Region},
		{"VOLUME_ID", p.VolumeID},
		{"HOSTED_ZONE_ID", p.HostedZoneID},
		{"SECRET_ID", p.SecretID},
		{"BACKUP_URL", c.BackupURL(p.BackupBucket)},
		{"CLUSTER_MARKER_URL", "s3://" + p.BackupBucket + "/" + EtcdClusterMarkerKey},
		{"RESTORE_BUMP_REVISION", fmt.Sprint(etcdRestoreBumpRevision)},
		{"HOLD_FILE", EtcdHoldFile},
		{"KMS_KEY_ID", p.KMSKeyID},
		{"SNAPSHOT_METRIC_NAMESPACE", EtcdSnapshotMetricNamespace},
		{"SNAPSHOT_METRIC", EtcdSnapshotMetric},
		{"SNAPSHOT_METRIC_DIMENSIONS", EtcdSnapshotMetricDimension + "=" + c.ClusterName},
		{"VOLUME_MOUNT", EtcdVolumeMount},
		{"DATA_DIR", EtcdDataDir},
		{"BACKUP_DIR", etcdBackupDir},
		{"PKI_DIR", EtcdPKIDir},
		// etcdctl reads these itself: on the member, it authenticates with
		// the member's server certificate.
		{"ETCDCTL_CACERT", EtcdPKIDir + "/" + etcdCACert},
		{"ETCDCTL_CERT", EtcdPKIDir + "/" + etcdServerCert},
		{"ETCDCTL_KEY", EtcdPKIDir + "/" + etcdServerKey},
		{"PEER_CERT", EtcdPKIDir + "/" + etcdPeerCert},
		{"CONFIG_FILE", EtcdConfigPath},
		{"RUNTIME_CONFIG_FILE", EtcdRuntimeConfigPath},
		{"MEMBER_ADD_RETRY_SECONDS", fmt.Sprint(EtcdMemberAddRetry.Seconds())},
		{"MEMBER_SERVICE", service.name},
		{"BACKUP_TIMER", timer.name},
		{"PROMOTE_TIMER", promoteTimer.name},
		{"CERT_REFRESH_TIMER", refreshTimer.name},
		{"LEAVE_TIMER", leaveTimer.name},
		{"LEAVE_HOOK", EtcdLeaveHook},
		{"LEAVE_STATE_DIR", etcdLeaveStateDir},
		{"SILENT_ASK_SECONDS", strconv.Itoa(etcdSilentAskSeconds)},
		{"CLUSTER_TAG", ClusterTagKey(c.ClusterName)},
		{"MEMBER_TAG", EtcdMemberTag},
		{"CERT_DAYS_LEFT_METRIC", CertDaysLeftMetric},
		{"CERT_RENEWAL_FAILED_METRIC", CertRenewalFailedMetric},
		{"ETCD_ARCHIVE_URL", p.Etcd.s3URL(p.AssetBucket)},
		{"ETCD_ARCHIVE_SHA256", p.Etcd.SHA256},
		{"BIN_DIR", BinDir},
		{"PATH", nodePath},
	}
	node := Node{
		Packages: []string{"awscli", "jq", "curl"},
		Files: []File{
			{Path: EtcdConfigPath, Content: config, Mode: "0644"},
			service.file(), backup.file(), timer.file(), promote.file(), promoteTimer.file(), refresh.file(), refreshTimer.file(),
			leave.file(), leaveTimer.file(),
			{Path: EtcdRestoreCommand, Content: "#!/bin/sh\n# shellcheck source=/dev/null\n" + envExec(EtcdEnvPath, ScriptDir+"/etcd-restore.sh") + ` "$@"` + "\n", Mode: "0755"},
		},
	}
	if err := node.withEnv(EtcdEnvPath, "etcd member settings", c.ClusterName, c.BootstrapDeadline, env, "etcd-bootstrap.sh"); err != nil {
		return Node{}, err
	}
	if err := node.addScripts("etcd-common.sh", "imds.sh", "assets.sh", "credentials.sh", "etcd-bootstrap.sh", "etcd-start.sh", "etcd-backup.sh",
		"etcd-restore.sh", "etcd-promote.sh", "etcd-cert-refresh.sh", "etcd-leave.sh", "due.sh"); err != nil {
		return Node{}, err
	}
	return node, nil
}

// promoteUnits run etcd-promote.sh every 20 s: a learner becomes a voter
// within about that of catching up.
func promoteUnits() (service, timer unit) {
	return timedScript{name: "kubeha-etcd-promote", does: "Promote this etcd learner once caught up; mark the cluster formed",
		script: "etcd-promote.sh", envFile: EtcdEnvPath, after: "etcd.service",
		schedule: []string{"OnActiveSec=20", "OnUnitInactiveSec=20"}}.units()
}

// EtcdLeaveUnit runs etcd-leave.sh every etcdLeaveIntervalSeconds: a
// member leaving its group goes within about that once it may. Each run
// reads the other members' health over TLS, so not more often. A member
// asks Auto Scaling about a silent member at most every
// etcdSilentAskSeconds, noted under etcdLeaveStateDir: one stays silent for
// minutes while its successor boots, and each ask starts the AWS CLI.
const (
	EtcdLeaveUnit            = "kubeha-etcd-leave.service"
	etcdLeaveIntervalSeconds = 10
	etcdSilentAskSeconds     = 30
	etcdLeaveStateDir        = "/run/kubeha-etcd-leave"
)

func etcdLeaveUnits() (service, timer unit) {
	return everySeconds(EtcdLeaveUnit, "Let a member leaving its group go once the others are healthy voters",
		"etcd-leave.sh", EtcdEnvPath, "etcd.service", etcdLeaveIntervalSeconds)
}

// EtcdCertRefreshUnit runs etcd-cert-refresh.sh a minute after the
// member starts and hourly after: `pulumi up` re-issues etcd's
// certificates 90 days before they expire, so a new one is in use within
// the hour.
const EtcdCertRefreshUnit = "kubeha-etcd-cert-refresh.service"

func etcdCertRefreshUnits() (service, timer unit) {
	return timedScript{name: strings.TrimSuffix(EtcdCertRefreshUnit, ".service"), does: "Re-read this etcd member's certificates from its secret",
		script: "etcd-cert-refresh.sh", envFile: EtcdEnvPath, after: "etcd.service",
		schedule: []string{"OnActiveSec=60", "OnUnitInactiveSec=3600"}}.units()
}

// BackupURL is where snapshots go.
func (c EtcdCluster) BackupURL(bucket string) string {
	return "s3://" + bucket + "/" + etcdBackupPrefix
}

// units are the member's etcd service and the snapshot timer with its
// service.
func (c EtcdCluster) units() (service, backup, timer unit) {
	service = unit{"etcd.service", strings.Join([]string{
		"[Unit]",
		"Description=etcd member (kubeha)",
		"Documentation=https://etcd.io/docs/v3.6/",
		"Wants=network-online.target",
		"After=network-online.target",
		"RequiresMountsFor=" + EtcdVolumeMount,
		"ConditionPathExists=!" + EtcdHoldFile,
		"",
		"[Service]",
		"Type=notify",
		"EnvironmentFile=" + EtcdEnvPath,
		"ExecStart=" + ScriptDir + "/etcd-start.sh",
		"Restart=always",
		"RestartSec=5",
		"TimeoutStartSec=0",
		"LimitNOFILE=65536",
		"NoNewPrivileges=true",
		"ProtectHome=true",
		"PrivateTmp=true",
		"",
		"[Install]",
		"WantedBy=multi-user.target",
		""}, "\n")}
	backup, timer = timedScript{name: "kubeha-etcd-backup", does: "etcd snapshot to S3, taken on the leader only",
		script: "etcd-backup.sh", envFile: EtcdEnvPath, after: service.name,
		schedule: []string{"OnBootSec=5min", fmt.Sprintf("OnUnitActiveSec=%dmin", c.BackupIntervalMinutes), "RandomizedDelaySec=60"}}.units()
	return service, backup, timer
}
