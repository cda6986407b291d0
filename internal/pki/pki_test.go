package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"
	"time"
)

func parse(t *testing.T, p *Pair) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(p.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestEtcdChainVerifies(t *testing.T) {
	ca, err := Issue(EtcdCA("c1"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(parse(t, ca))
	dns := "etcd-a.c1.internal"
	for _, c := range []struct {
		spec  Spec
		usage x509.ExtKeyUsage
		name  string
	}{
		{EtcdServer(dns), x509.ExtKeyUsageServerAuth, dns},
		{EtcdServer(dns), x509.ExtKeyUsageServerAuth, "localhost"},
		{EtcdServer(dns), x509.ExtKeyUsageClientAuth, ""},
		{EtcdPeer(dns), x509.ExtKeyUsageServerAuth, dns},
		{EtcdPeer(dns), x509.ExtKeyUsageClientAuth, ""},
		{EtcdClient("kube-apiserver-etcd-client"), x509.ExtKeyUsageClientAuth, ""},
		{EtcdHealthcheckClient(), x509.ExtKeyUsageClientAuth, ""},
	} {
		pair, err := ca.Sign(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parse(t, pair).Verify(x509.VerifyOptions{Roots: roots, DNSName: c.name, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Errorf("%s for %v %q: %v", c.spec.CommonName, c.usage, c.name, err)
		}
	}
	client, _ := ca.Sign(EtcdClient("x"))
	if _, err := parse(t, client).Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verified as a server certificate")
	}
	other, _ := Issue(EtcdCA("other"))
	foreign, _ := other.Sign(EtcdServer(dns))
	if _, err := parse(t, foreign).Verify(x509.VerifyOptions{Roots: roots, DNSName: dns}); err == nil {
		t.Error("a certificate from another CA verified")
	}
}

func TestSpecsMatchPulumiTLSUses(t *testing.T) {
	if uses := EtcdCA("c").AllowedUses(); !slices.Contains(uses, "cert_signing") {
		t.Errorf("CA uses %v lack cert_signing", uses)
	}
	if uses := EtcdPeer("d").AllowedUses(); !slices.Contains(uses, "server_auth") || !slices.Contains(uses, "client_auth") {
		t.Errorf("peer uses %v, want server_auth and client_auth", uses)
	}
	if _, err := Issue(EtcdPeer("d")); err == nil {
		t.Error("Issue self-signed a leaf certificate")
	}
}

func TestResignKeepsTheKeyAndNamesWithANewLifetime(t *testing.T) {
	ca, err := Issue(EtcdCA("c1"))
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Sign(EtcdServer("etcd-a.c1.internal"))
	if err != nil {
		t.Fatal(err)
	}
	short, err := ca.Resign(string(server.CertPEM), 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	old, renewed := parse(t, server), parse(t, &Pair{CertPEM: []byte(short)})
	if left := time.Until(renewed.NotAfter); left > 4*time.Minute || left < 3*time.Minute {
		t.Errorf("the re-signed certificate has %s left, want about 4m", left)
	}
	if !renewed.PublicKey.(*ecdsa.PublicKey).Equal(old.PublicKey) || renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("re-signing changed the key or kept the serial")
	}
	if renewed.Subject.CommonName != old.Subject.CommonName || !slices.Equal(renewed.DNSNames, old.DNSNames) ||
		len(renewed.IPAddresses) != 1 || !renewed.IPAddresses[0].Equal(old.IPAddresses[0]) || !slices.Equal(renewed.ExtKeyUsage, old.ExtKeyUsage) {
		t.Errorf("re-signed: %s %v %v %v; was %s %v %v %v", renewed.Subject.CommonName, renewed.DNSNames, renewed.IPAddresses, renewed.ExtKeyUsage,
			old.Subject.CommonName, old.DNSNames, old.IPAddresses, old.ExtKeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(parse(t, ca))
	if _, err := renewed.Verify(x509.VerifyOptions{Roots: roots, DNSName: "etcd-a.c1.internal"}); err != nil {
		t.Error(err)
	}
}
