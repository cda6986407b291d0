package bootstrap

// The files the control-plane components read besides kubeadm's: the API
// server's authentication, encryption and audit configuration, and the
// scheduler's configuration. kubeadm mounts ControlPlaneConfigDir into
// their static pods.

import "slices"

// Their file names in ControlPlaneConfigDir. The encryption configuration
// holds a secret, so it is rendered as a template and filled at boot.
const (
	schedulerFile      = "scheduler.yaml"
	authenticationFile = "authentication.yaml"
	encryptionFile     = "encryption.yaml"
	auditPolicyFile    = "audit-policy.yaml"
)

// encryptionKeyPlaceholder stands for the secrets-encryption key.
const encryptionKeyPlaceholder = "ENCRYPTION_KEY_FROM_SECRET"

// AuditLogPath is where the API server writes its audit log.
const (
	auditLogDir  = "/var/log/kubernetes/audit"
	AuditLogPath = auditLogDir + "/audit.log"
)

// ZoneLabel is the well-known label the cloud-controller-manager sets.
const ZoneLabel = "topology.kubernetes.io/zone"

// healthEndpoints are the API server's health endpoints, HealthCheckPath
// among them: open to anonymous requests, and left out of the audit log.
var healthEndpoints = []string{"/livez", HealthCheckPath, "/healthz"}

// SchedulerConfig spreads pods over zones (and then hosts) by default, the
// modern form of SelectorSpreadPriority, and sets kubeha's Lease timing.
func (c ControlPlane) SchedulerConfig() (string, error) {
	type constraint struct {
		MaxSkew           int    `yaml:"maxSkew"`
		TopologyKey       string `yaml:"topologyKey"`
		WhenUnsatisfiable string `yaml:"whenUnsatisfiable"`
	}
	le := c.LeaderElection
	cfg := map[string]any{
		"apiVersion":       "kubescheduler.config.k8s.io/v1",
		"kind":             "KubeSchedulerConfiguration",
		"clientConnection": map[string]any{"kubeconfig": "/etc/kubernetes/scheduler.conf"},
		"leaderElection": map[string]any{
			"leaderElect": true, "resourceLock": "leases", "resourceNamespace": "kube-system", "resourceName": "kube-scheduler",
			"leaseDuration": seconds(le.LeaseDuration), "renewDeadline": seconds(le.RenewDeadline), "retryPeriod": seconds(le.RetryPeriod),
		},
		"profiles": []any{map[string]any{
			"schedulerName": "default-scheduler",
			"pluginConfig": []any{map[string]any{
				"name": "PodTopologySpread",
				"args": map[string]any{
					"defaultingType": "List",
					"defaultConstraints": []constraint{
						{1, ZoneLabel, "ScheduleAnyway"},
						{1, "kubernetes.io/hostname", "ScheduleAnyway"},
					},
				},
			}},
		}},
	}
	return yamlDocs(cfg)
}

// AuthenticationConfig allows anonymous requests to the health endpoints
// (the load balancer's check needs HealthCheckPath) and to the
// cluster-info ConfigMap (a joining node's discovery reads it before it
// has credentials, and checks its token signature); the rest needs
// credentials.
func (c ControlPlane) AuthenticationConfig() (string, error) {
	var anonymous []map[string]string
	for _, path := range slices.Concat(healthEndpoints, []string{"/api/v1/namespaces/kube-public/configmaps/cluster-info"}) {
		anonymous = append(anonymous, map[string]string{"path": path})
	}
	return yamlDocs(map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AuthenticationConfiguration",
		"anonymous":  map[string]any{"enabled": true, "conditions": anonymous},
	})
}

// EncryptionConfig encrypts Secrets in etcd with secretbox; the key is
// filled in at boot from the node's secret.
func (c ControlPlane) EncryptionConfig() (string, error) {
	return yamlDocs(map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "EncryptionConfiguration",
		"resources": []any{map[string]any{
			"resources": []string{"secrets"},
			"providers": []any{
				map[string]any{"secretbox": map[string]any{"keys": []any{map[string]string{"name": "key1", "secret": encryptionKeyPlaceholder}}}},
				// Reads Secrets written before encryption was on.
				map[string]any{"identity": map[string]any{}},
			},
		}},
	})
}

// AuditPolicy logs who did what at metadata level, request bodies for
// writes, never Secret payloads, and drops the high-volume noise (health
// probes, Lease renewals, watches).
func (c ControlPlane) AuditPolicy() (string, error) {
	group := func(name string, resources ...string) map[string]any {
		return map[string]any{"group": name, "resources": resources}
	}
	var quiet []string
	for _, path := range healthEndpoints {
		quiet = append(quiet, path+"*")
	}
	return yamlDocs(map[string]any{
		"apiVersion": "audit.k8s.io/v1",
		"kind":       "Policy",
		"omitStages": []string{"RequestReceived"},
		"rules": []any{
			map[string]any{"level": "None", "nonResourceURLs": append(quiet, "/version", "/metrics")},
			map[string]any{"level": "None", "verbs": []string{"get", "update"}, "resources": []any{group("coordination.k8s.io", "leases")}},
			map[string]any{"level": "None", "verbs": []string{"watch"}},
			map[string]any{"level": "Metadata", "resources": []any{
				group("", "secrets", "configmaps", "serviceaccounts/token"), group("authentication.k8s.io", "tokenreviews")}},
			map[string]any{"level": "Request", "verbs": []string{"create", "update", "patch", "delete", "deletecollection"}},
			map[string]any{"level": "Metadata"},
		},
	})
}
