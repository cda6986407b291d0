package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// token signs claims as kube-apiserver does: ES256, kid in the header,
// r||s as the signature.
func token(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": kid})
	payload, _ := json.Marshal(claims)
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestDocumentsVerifyTheClusterTokensOnly(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	issuer := S3Issuer("kubeha-prod-oidc-0123456789", "eu-west-1")
	discovery, keys, err := Documents(issuer, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(discovery, `"jwks_uri":"https://kubeha-prod-oidc-0123456789.s3.eu-west-1.amazonaws.com/openid/v1/jwks"`) {
		t.Errorf("discovery document: %s", discovery)
	}
	kid, _ := KeyID(&key.PublicKey)
	now := time.Now()
	good := map[string]any{"iss": issuer, "sub": "system:serviceaccount:kube-system:ebs-csi-controller-sa", "aud": []string{STSAudience}, "exp": now.Add(time.Hour).Unix()}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for key, value := range good {
			c[key] = value
		}
		c[k] = v
		return c
	}
	if c, err := Verify(token(t, key, kid, good), discovery, keys, STSAudience, now); err != nil || c.Subject != good["sub"] {
		t.Fatalf("the cluster's own token: %+v, %v", c, err)
	}
	for name, tok := range map[string]string{
		"another key's signature": token(t, other, kid, good),
		"an unknown kid":          token(t, key, "not-"+kid, good),
		"another issuer":          token(t, key, kid, with("iss", LegacyIssuer)),
		"another audience":        token(t, key, kid, with("aud", []string{"kubernetes"})),
		"an expired token":        token(t, key, kid, with("exp", now.Add(-time.Minute).Unix())),
		"a payload changed after": strings.Join(append([]string{strings.Split(token(t, key, kid, good), ".")[0], base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"` + issuer + `","sub":"system:serviceaccount:kube-system:admin","aud":["sts.amazonaws.com"],"exp":9999999999}`))}, strings.Split(token(t, key, kid, good), ".")[2]), "."),
	} {
		if _, err := Verify(tok, discovery, keys, STSAudience, now); err == nil {
			t.Errorf("%s: verified", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
