// Package pki defines each certificate kubeha uses once, as plain data: its
// subject, SANs, usages and validity. Components map these specs onto
// pulumi-tls resources; tests and the local rehearsal issue them with
// crypto/x509 (Issue, Sign). Both paths read the same spec, so the
// certificates tested locally are the ones AWS nodes get.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// KeyAlgorithm and KeyCurve are used for every key: ECDSA P-256, which
// etcd, kubeadm and pulumi-tls all support, and which is fast to generate.
const (
	KeyAlgorithm = "ECDSA"
	KeyCurve     = "P256"
)

// Validity: CAs live ten years; leaf certificates two, and pulumi-tls
// renews them on the `pulumi up` after they enter the renewal window.
const (
	CAValidityHours   = 10 * 365 * 24
	LeafValidityHours = 2 * 365 * 24
	EarlyRenewalHours = 90 * 24
)

// Usage is an extended key usage.
type Usage string

const (
	ServerAuth Usage = "server_auth"
	ClientAuth Usage = "client_auth"
)

// Spec is one certificate.
type Spec struct {
	CommonName string
	// Organization is a single O, as pulumi-tls allows; Kubernetes reads it
	// as the client's group.
	Organization  string
	DNSNames      []string
	IPAddresses   []string
	Usages        []Usage
	IsCA          bool
	ValidityHours int
}

// AllowedUses is the spec's key usage in pulumi-tls's vocabulary.
func (s Spec) AllowedUses() []string {
	if s.IsCA {
		return []string{"cert_signing", "crl_signing", "digital_signature", "key_encipherment"}
	}
	uses := []string{"digital_signature", "key_encipherment"}
	for _, u := range s.Usages {
		uses = append(uses, string(u))
	}
	return uses
}

// EtcdCA is the etcd cluster's own CA, separate from the Kubernetes CA.
func EtcdCA(cluster string) Spec {
	return Spec{CommonName: cluster + "-etcd-ca", IsCA: true, ValidityHours: CAValidityHours}
}

// EtcdServer is a member's client-facing certificate. It is also a client
// certificate, so the member's own backup and join scripts can use it.
func EtcdServer(memberDNS string) Spec {
	return Spec{
		CommonName:    memberDNS,
		DNSNames:      []string{memberDNS, "localhost"},
		IPAddresses:   []string{"127.0.0.1"},
		Usages:        []Usage{ServerAuth, ClientAuth},
		ValidityHours: LeafValidityHours,
	}
}

// EtcdPeer is a member's certificate for raft traffic. etcd checks the
// connecting peer's address against these SANs, resolving the DNS name.
func EtcdPeer(memberDNS string) Spec {
	return Spec{
		CommonName:    memberDNS,
		DNSNames:      []string{memberDNS},
		Usages:        []Usage{ServerAuth, ClientAuth},
		ValidityHours: LeafValidityHours,
	}
}

// EtcdHealthcheckClient is the identity of health checks and metrics
// scrapes, kept apart from kube-apiserver's so it can be revoked alone.
func EtcdHealthcheckClient() Spec {
	return Spec{CommonName: "kube-etcd-healthcheck-client", Usages: []Usage{ClientAuth}, ValidityHours: LeafValidityHours}
}

// EtcdAPIServerClient is kube-apiserver's client certificate, as the
// EtcdCluster component issues it.
func EtcdAPIServerClient() Spec { return EtcdClient("kube-apiserver-etcd-client") }

// EtcdClient is kube-apiserver's client certificate.
func EtcdClient(commonName string) Spec {
	return Spec{
		CommonName:    commonName,
		Organization:  "system:masters",
		Usages:        []Usage{ClientAuth},
		ValidityHours: LeafValidityHours,
	}
}

// WebhookCA signs the serving certificate of an admission webhook that
// kube-apiserver calls; the webhook's configuration carries it as its
// caBundle, so it is trusted for that webhook only.
func WebhookCA(cluster, webhook string) Spec {
	return Spec{CommonName: cluster + "-" + webhook + "-ca", IsCA: true, ValidityHours: CAValidityHours}
}

// WebhookServing is a webhook's serving certificate for its Service,
// the name kube-apiserver checks when it calls it.
func WebhookServing(service, namespace string) Spec {
	name := service + "." + namespace + ".svc"
	return Spec{CommonName: name, DNSNames: []string{name}, Usages: []Usage{ServerAuth}, ValidityHours: LeafValidityHours}
}

// Pair is a certificate and its key, PEM encoded.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
}

// Issue makes a self-signed certificate for spec, which must be a CA.
func Issue(spec Spec) (*Pair, error) {
	if !spec.IsCA {
		return nil, fmt.Errorf("pki: %s is not a CA; sign it with a CA's Sign", spec.CommonName)
	}
	return issue(spec, nil)
}

// Sign issues spec signed by the CA pair.
func (ca *Pair) Sign(spec Spec) (*Pair, error) { return issue(spec, ca) }

func issue(spec Spec, ca *Pair) (*Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	parent, signer := (*x509.Certificate)(nil), key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := sign(spec, &key.PublicKey, parent, signer, hours(spec.ValidityHours))
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		cert:    cert,
		key:     key,
	}, nil
}

func hours(n int) time.Duration { return time.Duration(n) * time.Hour }

// sign issues spec for pub, valid for lifetime, signed by signer as
// parent, or self-signed when parent is nil; it returns the certificate's
// DER.
func sign(spec Spec, pub *ecdsa.PublicKey, parent *x509.Certificate, signer *ecdsa.PrivateKey, lifetime time.Duration) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.CommonName},
		DNSNames:              spec.DNSNames,
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  spec.IsCA,
	}
	if spec.Organization != "" {
		tmpl.Subject.Organization = []string{spec.Organization}
	}
	for _, ip := range spec.IPAddresses {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			return nil, fmt.Errorf("pki: %s: bad IP SAN %q", spec.CommonName, ip)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, parsed)
	}
	for _, u := range spec.Usages {
		switch u {
		case ServerAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		case ClientAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
	}
	if spec.IsCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	if parent == nil {
		parent = tmpl
	}
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

// NewKeyPEM is a fresh key, PEM-encoded as pulumi-tls's PrivateKey gives
// an ECDSA key.
func NewKeyPEM() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})), err
}

// CertPEM issues spec for pub, signed with signerKeyPEM: self-signed when
// parentPEM is "", else by the CA certificate parentPEM. It does what
// pulumi-tls's SelfSignedCert and LocallySignedCert do, for mocked runs
// whose certificates must work.
func CertPEM(spec Spec, pub *ecdsa.PublicKey, parentPEM, signerKeyPEM string) (string, error) {
	signer, err := parseKey(signerKeyPEM)
	if err != nil {
		return "", err
	}
	var parent *x509.Certificate
	if parentPEM != "" {
		block, _ := pem.Decode([]byte(parentPEM))
		if block == nil {
			return "", fmt.Errorf("pki: %s: the CA certificate is not PEM", spec.CommonName)
		}
		if parent, err = x509.ParseCertificate(block.Bytes); err != nil {
			return "", err
		}
	}
	der, err := sign(spec, pub, parent, signer, hours(spec.ValidityHours))
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), err
}

// Resign is certPEM signed again by ca for the same key, subject, names
// and uses, valid for lifetime from now: what pulumi-tls's renewal of a
// LocallySignedCert gives, at any lifetime.
func (ca *Pair) Resign(certPEM string, lifetime time.Duration) (string, error) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return "", errors.New("pki: the certificate to re-sign is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("pki: %s has a %T key, not ECDSA", cert.Subject.CommonName, cert.PublicKey)
	}
	spec := Spec{CommonName: cert.Subject.CommonName, DNSNames: cert.DNSNames}
	if len(cert.Subject.Organization) > 0 {
		spec.Organization = cert.Subject.Organization[0]
	}
	for _, ip := range cert.IPAddresses {
		spec.IPAddresses = append(spec.IPAddresses, ip.String())
	}
	for _, u := range cert.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			spec.Usages = append(spec.Usages, ServerAuth)
		case x509.ExtKeyUsageClientAuth:
			spec.Usages = append(spec.Usages, ClientAuth)
		}
	}
	der, err := sign(spec, pub, ca.cert, ca.key, lifetime)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), err
}

// PublicKey is the public half of a key from NewKeyPEM.
func PublicKey(keyPEM string) (*ecdsa.PublicKey, error) {
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	return &key.PublicKey, nil
}

func parseKey(keyPEM string) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(keyPEM))
	if block == nil {
		return nil, errors.New("pki: the key is not PEM")
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

// KubernetesCA signs the cluster's serving and client certificates;
// kubeadm on each control-plane node issues that node's own from it.
func KubernetesCA(cluster string) Spec {
	return Spec{CommonName: cluster + "-kubernetes-ca", IsCA: true, ValidityHours: CAValidityHours}
}

// FrontProxyCA signs the API server's aggregation-layer client.
func FrontProxyCA(cluster string) Spec {
	return Spec{CommonName: cluster + "-front-proxy-ca", IsCA: true, ValidityHours: CAValidityHours}
}

// KubernetesAdmin is the cluster-admin identity of the admin kubeconfig.
// kubeadm binds the kubeadm:cluster-admins group to cluster-admin, and
// unlike system:masters that binding can be revoked.
func KubernetesAdmin() Spec {
	return Spec{CommonName: "kubeha-admin", Organization: "kubeadm:cluster-admins", Usages: []Usage{ClientAuth}, ValidityHours: LeafValidityHours}
}

// ParsePair reads a certificate and its key, e.g. a CA a mocked program
// issued, so that more can be signed with it.
func ParsePair(certPEM, keyPEM string) (*Pair, error) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return nil, errors.New("pki: the certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	return &Pair{CertPEM: []byte(certPEM), KeyPEM: []byte(keyPEM), cert: cert, key: key}, nil
}

// PublicKeyPEM is the public half of a key from NewKeyPEM, PEM-encoded
// (PKIX) as pulumi-tls's PrivateKey gives it.
func PublicKeyPEM(keyPEM string) (string, error) {
	pub, err := PublicKey(keyPEM)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), err
}
