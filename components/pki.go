package components

import (
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/pki"
)

// tlsPair is a certificate issued by pulumi-tls; KeyPEM is a secret.
type tlsPair struct {
	CertPEM pulumi.StringOutput
	KeyPEM  pulumi.StringOutput
}

// issueCA makes a self-signed CA from its spec.
func issueCA(ctx *pulumi.Context, name string, spec pki.Spec, opts []pulumi.ResourceOption) (tlsPair, error) {
	key, err := newKey(ctx, name, opts)
	if err != nil {
		return tlsPair{}, err
	}
	cert, err := tls.NewSelfSignedCert(ctx, name, &tls.SelfSignedCertArgs{
		PrivateKeyPem:       key.PrivateKeyPem,
		Subject:             &tls.SelfSignedCertSubjectArgs{CommonName: pulumi.String(spec.CommonName), Organization: optional(spec.Organization)},
		IsCaCertificate:     pulumi.Bool(true),
		ValidityPeriodHours: pulumi.Int(spec.ValidityHours),
		AllowedUses:         pulumi.ToStringArray(spec.AllowedUses()),
	}, opts...)
	if err != nil {
		return tlsPair{}, err
	}
	return tlsPair{CertPEM: cert.CertPem, KeyPEM: pulumi.ToSecret(key.PrivateKeyPem).(pulumi.StringOutput)}, nil
}

// issueCert makes a certificate from its spec, signed by ca. It is renewed
// on the first `pulumi up` inside pki.EarlyRenewalHours of expiry.
func issueCert(ctx *pulumi.Context, name string, spec pki.Spec, ca tlsPair, opts []pulumi.ResourceOption) (tlsPair, error) {
	key, err := newKey(ctx, name, opts)
	if err != nil {
		return tlsPair{}, err
	}
	csr, err := tls.NewCertRequest(ctx, name, &tls.CertRequestArgs{
		PrivateKeyPem: key.PrivateKeyPem,
		Subject:       &tls.CertRequestSubjectArgs{CommonName: pulumi.String(spec.CommonName), Organization: optional(spec.Organization)},
		DnsNames:      pulumi.ToStringArray(spec.DNSNames),
		IpAddresses:   pulumi.ToStringArray(spec.IPAddresses),
	}, opts...)
	if err != nil {
		return tlsPair{}, err
	}
	cert, err := tls.NewLocallySignedCert(ctx, name, &tls.LocallySignedCertArgs{
		CertRequestPem:      csr.CertRequestPem,
		CaCertPem:           ca.CertPEM,
		CaPrivateKeyPem:     ca.KeyPEM,
		ValidityPeriodHours: pulumi.Int(spec.ValidityHours),
		EarlyRenewalHours:   pulumi.Int(pki.EarlyRenewalHours),
		AllowedUses:         pulumi.ToStringArray(spec.AllowedUses()),
	}, opts...)
	if err != nil {
		return tlsPair{}, err
	}
	return tlsPair{CertPEM: cert.CertPem, KeyPEM: pulumi.ToSecret(key.PrivateKeyPem).(pulumi.StringOutput)}, nil
}

func newKey(ctx *pulumi.Context, name string, opts []pulumi.ResourceOption) (*tls.PrivateKey, error) {
	return tls.NewPrivateKey(ctx, name, &tls.PrivateKeyArgs{
		Algorithm: pulumi.String(pki.KeyAlgorithm), EcdsaCurve: pulumi.String(pki.KeyCurve),
	}, opts...)
}

// optional is nil for "", so an unset field is left out.
func optional(s string) pulumi.StringPtrInput {
	if s == "" {
		return nil
	}
	return pulumi.String(s)
}
