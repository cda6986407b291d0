// Package lab runs kubeha's rendered nodes for real on one Linux machine,
// for the real-binary tests (internal/bootstrap) and the rehearsal: it
// lays etcd members and control-plane nodes out in netlab hosts from their
// rendered files, starts what systemd and the kubelet would start on them,
// talks to them as clients do, and derives from the configuration the
// bounds that measured times are held to (bounds.go).
package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

// The folders a node of each kind has to itself, at their real paths;
// everything its rendered files, scripts and processes write is below
// them.
var (
	EtcdBinds = []string{path.Dir(bootstrap.EtcdConfigPath), path.Dir(bootstrap.EtcdEnvPath), bootstrap.EtcdVolumeMount,
		bootstrap.ScriptDir, bootstrap.BinDir, path.Dir(bootstrap.EtcdRuntimeConfigPath)}
	ControlPlaneBinds = []string{path.Dir(bootstrap.KubernetesPKIDir), path.Dir(bootstrap.NodeEnvPath), path.Dir(bootstrap.AuditLogPath),
		bootstrap.ScriptDir, bootstrap.BinDir}
)

// The pinned binaries each kind of node runs, built by hack/tools.sh.
var (
	EtcdBinaries = []string{"etcd", "etcdctl", "etcdutl"}
	// ControlPlaneComponents are the static pods kubeadm renders, in the
	// order a node starts them.
	ControlPlaneComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}
	Binaries               = slices.Concat(EtcdBinaries, []string{"kubeadm"}, ControlPlaneComponents)
	// NodeBinaries are what the rehearsal's node assets are made of.
	NodeBinaries = slices.Concat(Binaries, []string{"kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "pause"})
)

// InstallBinaries links the named pinned binaries into a host's
// bootstrap.BinDir, with the aws command that serves the host from store
// (netlab.AWSShim).
func InstallBinaries(root, store string, names ...string) error {
	bin := filepath.Join(root, bootstrap.BinDir)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	for _, name := range names {
		p, err := tools.Path(name)
		if err != nil {
			return err
		}
		if err := os.Symlink(p, filepath.Join(bin, name)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(bin, "aws"), []byte(netlab.AWSShim(store)), 0o755)
}

// WriteEtcdCerts writes the etcd CA and a certificate and key per spec,
// named <name>.crt and <name>.key, into a host's bootstrap.EtcdPKIDir.
func WriteEtcdCerts(root string, ca *pki.Pair, specs map[string]pki.Spec) error {
	dir := filepath.Join(root, bootstrap.EtcdPKIDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	for name, spec := range specs {
		pair, err := ca.Sign(spec)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".crt"), pair.CertPEM, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".key"), pair.KeyPEM, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// EncryptionKey is the lab's secrets-encryption key (32 bytes, base64).
const EncryptionKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// ControlPlaneSecret is the cluster secret as the ControlPlane component
// stores it (bootstrap.ControlPlaneSecretFiles), from locally issued keys
// and the join token.
func ControlPlaneSecret(cluster string, k8sCA, etcdCA *pki.Pair, token string) (map[string]string, error) {
	frontProxy, err := pki.Issue(pki.FrontProxyCA(cluster))
	if err != nil {
		return nil, err
	}
	etcdClient, err := etcdCA.Sign(pki.EtcdAPIServerClient())
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	secret := map[string]string{
		"pki/ca.crt": string(k8sCA.CertPEM), "pki/ca.key": string(k8sCA.KeyPEM),
		"pki/front-proxy-ca.crt": string(frontProxy.CertPEM), "pki/front-proxy-ca.key": string(frontProxy.KeyPEM),
		"pki/sa.key":      string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER})),
		"pki/sa.pub":      string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub})),
		"pki/etcd/ca.crt": string(etcdCA.CertPEM), "pki/apiserver-etcd-client.crt": string(etcdClient.CertPEM),
		"pki/apiserver-etcd-client.key": string(etcdClient.KeyPEM),
		"bootstrap-token":               token,
		"encryption-key":                EncryptionKey,
	}
	if got, want := slices.Sorted(maps.Keys(secret)), slices.Sorted(slices.Values(bootstrap.ControlPlaneSecretFiles)); !slices.Equal(got, want) {
		return nil, fmt.Errorf("lab: the control-plane secret has %v, the component's %v", got, want)
	}
	return secret, nil
}

// WriteSecret stores a secret where the hosts' aws command finds it as
// Secrets Manager secret id.
func WriteSecret(store, id string, secret map[string]string) error {
	data, err := json.Marshal(secret)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(store, "secrets"), 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(store, "secrets", id+".json"), data, 0o600)
}

// PollInterval is how often WaitFor asks: fine enough for the seconds
// the tests measure, coarse enough to leave the nodes the CPU.
const PollInterval = 100 * time.Millisecond

// WaitFor polls ok until it returns nil and says how long that took. It
// gives up after limit, or when ctx ends, with ok's last error.
func WaitFor(ctx context.Context, what string, limit time.Duration, ok func() error) (time.Duration, error) {
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err = ok(); err == nil {
			return time.Since(start), nil
		}
		time.Sleep(PollInterval)
	}
	return 0, fmt.Errorf("%s: not within %s: %v", what, limit, err)
}
