// Package oidc publishes a cluster as its own OpenID Connect issuer, as
// AWS STS reads one for IAM roles for service accounts: the discovery
// document and key set kube-apiserver would serve at its own
// /.well-known/openid-configuration and /openid/v1/jwks, for a bucket to
// serve instead; and checks a service-account token against them.
package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Where the documents live under the issuer URL, as kube-apiserver serves
// them.
const (
	DiscoveryPath = ".well-known/openid-configuration"
	KeySetPath    = "openid/v1/jwks"
	// STSAudience is the audience AWS STS accepts a token for.
	STSAudience = "sts.amazonaws.com"
	// LegacyIssuer is kubeadm's issuer: API servers keep accepting its
	// tokens, so pods' existing tokens stay valid across the change.
	LegacyIssuer = "https://kubernetes.default.svc.cluster.local"
)

// KeySetURL is where issuer's key set is.
func KeySetURL(issuer string) string { return strings.TrimSuffix(issuer, "/") + "/" + KeySetPath }

// S3Issuer is the issuer URL of a bucket's root (virtual-hosted style).
func S3Issuer(bucket, region string) string {
	return "https://" + bucket + ".s3." + region + ".amazonaws.com"
}

type discovery struct {
	Issuer            string   `json:"issuer"`
	JWKSURI           string   `json:"jwks_uri"`
	ResponseTypes     []string `json:"response_types_supported"`
	SubjectTypes      []string `json:"subject_types_supported"`
	SigningAlgorithms []string `json:"id_token_signing_alg_values_supported"`
}

type jwk struct {
	Use string `json:"use"`
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Crv string `json:"crv"`
	Alg string `json:"alg"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

type keySet struct {
	Keys []jwk `json:"keys"`
}

// publicKey reads a PEM public key: kubeha's service-account keys are
// ECDSA P-256, signing ES256.
func publicKey(publicKeyPEM string) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode([]byte(publicKeyPEM))
	if block == nil {
		return nil, errors.New("oidc: no PEM public key")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	ec, ok := key.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("oidc: the service-account key is %T, want ECDSA P-256", key)
	}
	return ec, nil
}

// KeyID is the kid kube-apiserver puts in the tokens key signs: the
// unpadded base64url SHA-256 of its PKIX DER form.
func KeyID(key *ecdsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// Documents are the discovery document and key set of issuer, whose
// tokens the service-account key publicKeyPEM signs.
func Documents(issuer, publicKeyPEM string) (discoveryJSON, keySetJSON string, err error) {
	key, err := publicKey(publicKeyPEM)
	if err != nil {
		return "", "", err
	}
	kid, err := KeyID(key)
	if err != nil {
		return "", "", err
	}
	d, err := json.Marshal(discovery{Issuer: issuer, JWKSURI: KeySetURL(issuer), ResponseTypes: []string{"id_token"},
		SubjectTypes: []string{"public"}, SigningAlgorithms: []string{"ES256"}})
	if err != nil {
		return "", "", err
	}
	k, err := json.Marshal(keySet{Keys: []jwk{{Use: "sig", Kty: "EC", Kid: kid, Crv: "P-256", Alg: "ES256",
		X: base64.RawURLEncoding.EncodeToString(key.X.FillBytes(make([]byte, 32))),
		Y: base64.RawURLEncoding.EncodeToString(key.Y.FillBytes(make([]byte, 32)))}}})
	return string(d), string(k), err
}

// Claims are what a service-account token says of itself.
type Claims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience []string `json:"aud"`
	Expiry   int64    `json:"exp"`
	// KeyID is the key that signed it.
	KeyID string `json:"-"`
}

// Verify checks token as STS would with the documents: issued by the
// discovery document's issuer, signed by a key of the set it points at
// (found by kid), for audience, not expired. It returns the claims.
func Verify(token, discoveryJSON, keySetJSON, audience string, now time.Time) (Claims, error) {
	var d discovery
	var set keySet
	if err := json.Unmarshal([]byte(discoveryJSON), &d); err != nil {
		return Claims{}, fmt.Errorf("oidc: discovery document: %w", err)
	}
	if err := json.Unmarshal([]byte(keySetJSON), &set); err != nil {
		return Claims{}, fmt.Errorf("oidc: key set: %w", err)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, errors.New("oidc: not a JWS compact token")
	}
	var header struct{ Alg, Kid string }
	if err := decodeJSON(parts[0], &header); err != nil {
		return Claims{}, err
	}
	i := slices.IndexFunc(set.Keys, func(k jwk) bool { return k.Kid == header.Kid })
	if header.Alg != "ES256" || i < 0 || set.Keys[i].Kty != "EC" || set.Keys[i].Crv != "P-256" {
		return Claims{}, fmt.Errorf("oidc: token signed %s with key %q, which the key set does not hold", header.Alg, header.Kid)
	}
	x, errX := base64.RawURLEncoding.DecodeString(set.Keys[i].X)
	y, errY := base64.RawURLEncoding.DecodeString(set.Keys[i].Y)
	sig, errSig := base64.RawURLEncoding.DecodeString(parts[2])
	if err := errors.Join(errX, errY, errSig); err != nil || len(sig) != 64 {
		return Claims{}, fmt.Errorf("oidc: malformed key or signature: %v", err)
	}
	key := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return Claims{}, errors.New("oidc: the signature does not verify")
	}
	var c Claims
	if err := decodeJSON(parts[1], &c); err != nil {
		return Claims{}, err
	}
	c.KeyID = header.Kid
	switch {
	case c.Issuer != d.Issuer:
		return c, fmt.Errorf("oidc: issued by %q, the discovery document's issuer is %q", c.Issuer, d.Issuer)
	case !slices.Contains(c.Audience, audience):
		return c, fmt.Errorf("oidc: for %v, not %s", c.Audience, audience)
	case now.Unix() >= c.Expiry:
		return c, fmt.Errorf("oidc: expired at %s", time.Unix(c.Expiry, 0).UTC())
	}
	return c, nil
}

func decodeJSON(part string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return fmt.Errorf("oidc: %w", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("oidc: %w", err)
	}
	return nil
}
