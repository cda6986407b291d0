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
	SecretID string // the join secret: pki/ca.crt and bootstrap-token
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
	return kubernetesNode(kubernetesNodeSpec{
		Role: "worker", ClusterName: w.ClusterName, BootstrapDeadline: w.BootstrapDeadline, KubernetesVersion: w.KubernetesVersion, Endpoint: w.Endpoint,
		Zone: p.Zone, Region: p.Region, SecretID: p.SecretID, Assets: p.Assets,
		Env:     []envVar{{"KUBELET_CLIENT_CERT", kubeletClientCert}},
		Files:   []File{{Path: kubeadmTemplateDir + "/" + kubeadmJoinFile, Content: join, Mode: "0600"}},
		Scripts: []string{"worker-bootstrap.sh"},
	})
}
