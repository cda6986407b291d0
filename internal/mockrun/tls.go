package mockrun

import (
	"crypto/ecdsa"
	"fmt"
	"sync"

	"github.com/kubeha/kubeha/internal/pki"
)

// issuer plays pulumi-tls under mocks with real keys and certificates, so
// that what a mocked program stores (a member's secret, say) works when
// the rehearsal hands it to a node.
type issuer struct {
	mu sync.Mutex
	// requests are the certificate requests made so far, by the PEM the
	// mock returned for each.
	requests map[string]certRequest
}

type certRequest struct {
	spec pki.Spec
	pub  *ecdsa.PublicKey
}

// outputs are the computed outputs of a tls resource, or nil for other
// types.
func (is *issuer) outputs(typ, name string, res Resource) (map[string]any, error) {
	switch typ {
	case "tls:index/privateKey:PrivateKey":
		key, err := pki.NewKeyPEM()
		if err != nil {
			return nil, err
		}
		pub, err := pki.PublicKeyPEM(key)
		return map[string]any{"privateKeyPem": key, "publicKeyPem": pub}, err
	case "tls:index/selfSignedCert:SelfSignedCert":
		key := res.String("privateKeyPem")
		pub, err := pki.PublicKey(key)
		if err != nil {
			return nil, fmt.Errorf("mockrun: %s: %w", name, err)
		}
		cert, err := pki.CertPEM(specOf(res), pub, "", key)
		return map[string]any{"certPem": cert}, err
	case "tls:index/certRequest:CertRequest":
		pub, err := pki.PublicKey(res.String("privateKeyPem"))
		if err != nil {
			return nil, fmt.Errorf("mockrun: %s: %w", name, err)
		}
		csr := "mock csr " + name
		is.mu.Lock()
		if is.requests == nil {
			is.requests = map[string]certRequest{}
		}
		is.requests[csr] = certRequest{spec: specOf(res), pub: pub}
		is.mu.Unlock()
		return map[string]any{"certRequestPem": csr}, nil
	case "tls:index/locallySignedCert:LocallySignedCert":
		is.mu.Lock()
		req, ok := is.requests[res.String("certRequestPem")]
		is.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("mockrun: %s signs an unknown request %q", name, res.String("certRequestPem"))
		}
		// The request has the subject and names; the signer the validity and uses.
		spec := specOf(res)
		spec.CommonName, spec.Organization, spec.DNSNames, spec.IPAddresses = req.spec.CommonName, req.spec.Organization, req.spec.DNSNames, req.spec.IPAddresses
		cert, err := pki.CertPEM(spec, req.pub, res.String("caCertPem"), res.String("caPrivateKeyPem"))
		return map[string]any{"certPem": cert}, err
	}
	return nil, nil
}

// specOf reads a certificate's spec from a tls resource's inputs.
func specOf(res Resource) pki.Spec {
	spec := pki.Spec{
		DNSNames:    res.Strings("dnsNames"),
		IPAddresses: res.Strings("ipAddresses"),
		IsCA:        res.Bool("isCaCertificate"),
	}
	if cn := res.Get("subject", "commonName"); cn.IsString() {
		spec.CommonName = cn.StringValue()
	}
	if hours := res.Get("validityPeriodHours"); hours.IsNumber() {
		spec.ValidityHours = int(hours.NumberValue())
	}
	if org := res.Get("subject", "organization"); org.IsString() {
		spec.Organization = org.StringValue()
	}
	for _, use := range res.Strings("allowedUses") {
		if u := pki.Usage(use); u == pki.ServerAuth || u == pki.ClientAuth {
			spec.Usages = append(spec.Usages, u)
		}
	}
	return spec
}
