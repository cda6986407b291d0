package rehearsal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/oidc"
)

// WorkloadIdentity is what a pod can reach: a node's role through the
// metadata service, and AWS through a role for its service account.
type WorkloadIdentity struct {
	// HopLimit is the control-plane launch template's metadata hop limit.
	// NodeRole is the role cp-a itself got from its metadata service;
	// PodRefused why a pod-like process on cp-a (its own network
	// namespace, routed by the node) got none.
	HopLimit   int    `json:"hopLimit"`
	NodeRole   string `json:"nodeRole"`
	PodRefused string `json:"podRefused"`
	// Issuer is the service-account issuer the bucket's discovery
	// document names; Subject the service account of a token the API
	// server issued for STS's audience, verified with the bucket's key set
	// alone, by key KeyID; ServedKeys whether the API servers' own
	// /openid/v1/jwks holds the same keys.
	Issuer     string `json:"issuer"`
	Subject    string `json:"subject"`
	KeyID      string `json:"keyId"`
	ServedKeys bool   `json:"servedKeys"`
}

// irsaServiceAccount is the service account whose token the check asks for.
const irsaServiceAccount = "kubeha-rehearsal-irsa"

// checkWorkloadIdentity: cp-a's metadata service gives cp-a its role and
// nothing to a pod on it; a token the API server signs for STS verifies
// against the documents the issuer's bucket serves, as STS would read
// them.
func (c *cluster) checkWorkloadIdentity() (WorkloadIdentity, error) {
	w := WorkloadIdentity{HopLimit: c.nodes[0].PutResponseHopLimit}
	node := c.nodes[0].Host
	pod, err := node.AddNeighbour("pod", "100.64.0.2", "100.64.0.1")
	if err != nil {
		return w, err
	}
	if w.NodeRole, err = lab.RoleCredentials(node, 5*time.Second); err != nil {
		return w, fmt.Errorf("%s itself got no role credentials: %w", nodeName(0), err)
	}
	if role, err := lab.RoleCredentials(pod, 3*time.Second); err == nil {
		return w, fmt.Errorf("a pod on %s got the node's role %s from its metadata service (hop limit %d)", nodeName(0), role, w.HopLimit)
	} else {
		w.PodRefused = err.Error()
	}

	bucket := ""
	for _, r := range c.stack.declared {
		if r.Type == "aws:s3/bucketV2:BucketV2" && strings.HasSuffix(r.Name, "-oidc") {
			bucket = r.ID
		}
	}
	discovery, err := c.cloud.Object(bucket, oidc.DiscoveryPath)
	if err != nil {
		return w, fmt.Errorf("the issuer's discovery document in bucket %q: %w", bucket, err)
	}
	keys, err := c.cloud.Object(bucket, oidc.KeySetPath)
	if err != nil {
		return w, fmt.Errorf("the issuer's key set: %w", err)
	}
	api := c.lbAdmin
	account := map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]string{"name": irsaServiceAccount}}
	if code, body, err := api.Do("POST", "/api/v1/namespaces/kube-system/serviceaccounts", account); err != nil || code != http.StatusCreated && code != http.StatusConflict {
		return w, fmt.Errorf("creating service account %s: HTTP %d %s (%v)", irsaServiceAccount, code, body, err)
	}
	request := map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
		"spec": map[string]any{"audiences": []string{oidc.STSAudience}, "expirationSeconds": 3600}}
	code, body, err := api.Do("POST", "/api/v1/namespaces/kube-system/serviceaccounts/"+irsaServiceAccount+"/token", request)
	if err != nil || code != http.StatusCreated {
		return w, fmt.Errorf("a token for %s: HTTP %d %s (%v)", irsaServiceAccount, code, body, err)
	}
	var issued struct{ Status struct{ Token string } }
	if err := json.Unmarshal([]byte(body), &issued); err != nil {
		return w, err
	}
	claims, err := oidc.Verify(issued.Status.Token, string(discovery), string(keys), oidc.STSAudience, time.Now())
	if err != nil {
		return w, fmt.Errorf("the API server's token against the bucket's documents: %w", err)
	}
	if want := "system:serviceaccount:kube-system:" + irsaServiceAccount; claims.Subject != want {
		return w, fmt.Errorf("token for %s, want %s", claims.Subject, want)
	}
	w.Issuer, w.Subject, w.KeyID = claims.Issuer, claims.Subject, claims.KeyID
	// The API servers serve the same documents themselves.
	code, served, err := api.Do("GET", "/"+oidc.KeySetPath, nil)
	if err != nil || code != http.StatusOK {
		return w, fmt.Errorf("the API server's key set: HTTP %d %s (%v)", code, served, err)
	}
	w.ServedKeys = slices.Equal(keyIDs(served), keyIDs(string(keys)))
	if !w.ServedKeys {
		return w, fmt.Errorf("the API server serves keys %v, the bucket %v", keyIDs(served), keyIDs(string(keys)))
	}
	return w, nil
}

// keyIDs are a key set's key IDs, sorted.
func keyIDs(keySet string) []string {
	var set struct{ Keys []struct{ Kid string } }
	_ = json.Unmarshal([]byte(keySet), &set)
	var ids []string
	for _, k := range set.Keys {
		ids = append(ids, k.Kid)
	}
	slices.Sort(ids)
	return ids
}
