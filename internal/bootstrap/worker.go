package bootstrap

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// kubeletClientCert is the kubelet's current client certificate and key,
// in one file, once its bootstrap certificate was signed.
const kubeletClientCert = "/var/lib/kubelet/pki/kubelet-client-current.pem"

// Worker is what every worker of one pool in one zone shares.
type Worker struct {
	ClusterName string
	// BootstrapDeadline: see EtcdCluster.BootstrapDeadline.
	BootstrapDeadline time.Duration
	KubernetesVersion string
	// Endpoint is the load balancer's DNS name: workers never talk to a
	// single control-plane node.
	Endpoint string
	Labels   map[string]string
	Taints   []Taint
	// IgnorePreflightErrors are kubeadm preflight checks the node may fail.
	IgnorePreflightErrors []string
}

// WorkerParams are the per-group values AWS assigns at deploy time.
type WorkerParams struct {
	Zone     string
	Region   string
	SecretID string // the join secret: pki/ca.crt
	// CACertPEM is the cluster CA; discovery pins its public key.
	CACertPEM string
	Assets    ResolvedAssets
}

// KubeadmJoin renders the worker's JoinConfiguration: its labels go to the
// kubelet, its taints are set at registration, so no pod lands on it
// before they hold.
func (w Worker) KubeadmJoin(caCertHash string) (string, error) {
	args := kubeletArgs()
	if len(w.Labels) > 0 {
		var labels []string
		for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
			labels = append(labels, k+"="+w.Labels[k])
		}
		args = append(args, arg{"node-labels", strings.Join(labels, ",")})
	}
	return kubeadmJoin(w.Endpoint, caCertHash, nodeRegistration{CRISocket: criSocket, KubeletExtraArgs: args, Taints: w.Taints, IgnorePreflightErrors: w.IgnorePreflightErrors}, false)
}

// Node renders a worker's first boot.
func (w Worker) Node(p WorkerParams) (Node, error) {
	hash, err := CACertHash(p.CACertPEM)
	if err != nil {
		return Node{}, err
	}
	join, err := w.KubeadmJoin(hash)
	if err != nil {
		return Node{}, err
	}
	images, err := p.Assets.imagesEnv(p.Assets.withHeld(Assets.WorkerImages))
	if err != nil {
		return Node{}, err
	}
	return kubernetesNode(kubernetesNodeSpec{
		Role: "worker", ClusterName: w.ClusterName, BootstrapDeadline: w.BootstrapDeadline, KubernetesVersion: w.KubernetesVersion, Endpoint: w.Endpoint,
		Zone: p.Zone, Region: p.Region, SecretID: p.SecretID, Assets: p.Assets,
		Env: []envVar{images, {"KUBELET_CLIENT_CERT", kubeletClientCert},
			{"NODE_TOKEN_URL", "s3://" + p.Assets.Bucket + "/" + NodeTokenPrefix}},
		Files:   []File{{Path: kubeadmTemplateDir + "/" + kubeadmJoinFile, Content: join, Mode: "0600"}},
		Scripts: []string{"worker-bootstrap.sh", "worker-join-token.sh"},
	})
}

// A worker joins with a token of its own, never the cluster's: at first
// boot it makes one and writes it to NodeTokenPrefix + its IAM user ID in
// the asset bucket, a key only its own role session can write (an EC2
// role session's user ID is "<role ID>:<instance ID>"). A control-plane
// node's approver turns it into a bootstrap token of WorkerBootstrapGroup
// labelled InstanceLabel=<instance ID>, lasting workerTokenTTL, and
// approves that token's kubelet client certificate only for the
// instance's own private DNS name. Nothing else approves this group's
// requests: kubeadm auto-approves only its own token group's, which only
// control-plane nodes hold.
const (
	NodeTokenPrefix      = "node-tokens/"
	WorkerBootstrapGroup = "system:bootstrappers:kubeha:workers"
	InstanceLabel        = "kubeha.io/instance-id"
	workerTokenTTL       = time.Hour
	// WorkerRBACPath is applied by every control-plane node once it serves.
	WorkerRBACPath = ControlPlaneConfigDir + "/worker-join-rbac.yaml"
)

// WorkerJoinRBAC lets WorkerBootstrapGroup do what kubeadm join does, as
// kubeadm init lets its own token group: ask for a kubelet certificate,
// read the kubeadm and kubelet configurations, and look up its Node. It
// grants no automatic approval.
func WorkerJoinRBAC() string {
	subject := "subjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: " + WorkerBootstrapGroup + "\n"
	binding := func(kind, name, role, namespace string) string {
		meta := "metadata:\n  name: " + name + "\n"
		if namespace != "" {
			meta += "  namespace: " + namespace + "\n"
		}
		roleKind := strings.TrimSuffix(kind, "Binding")
		return "apiVersion: rbac.authorization.k8s.io/v1\nkind: " + kind + "\n" + meta +
			"roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: " + roleKind + "\n  name: " + role + "\n" + subject
	}
	return "# Rendered by kubeha: what a worker's own join token may do.\n" + strings.Join([]string{
		binding("ClusterRoleBinding", "kubeha:worker-bootstrap", "system:node-bootstrapper", ""),
		binding("ClusterRoleBinding", "kubeha:worker-get-nodes", "kubeadm:get-nodes", ""),
		binding("RoleBinding", "kubeha:worker-kubeadm-config", "kubeadm:nodes-kubeadm-config", "kube-system"),
		binding("RoleBinding", "kubeha:worker-kubelet-config", "kubeadm:kubelet-config", "kube-system"),
	}, "---\n")
}
