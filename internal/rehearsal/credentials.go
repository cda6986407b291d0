package rehearsal

// Drills of the cluster's credentials: the join token rotated as the
// README says.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
)

// TokenRotation is the join-token drill's: the runbook's `pulumi up` with
// joinTokenGeneration raised, then a sync on the control plane.
type TokenRotation struct {
	// Generation is the joinTokenGeneration rotated to.
	Generation int `json:"generation"`
	// SyncSeconds is from starting the sync until the cluster held the
	// new token only.
	SyncSeconds float64 `json:"syncSeconds"`
	// OldTokenStatus is the API's answer to the old token (401).
	OldTokenStatus int `json:"oldTokenStatus"`
	// NewTokenUser is who the API takes the new token for.
	NewTokenUser string `json:"newTokenUser"`
}

// rotateJoinToken follows the README's runbook: the stack's
// controlPlane.joinTokenGeneration raised, the program run again, and
// what its `pulumi up` changes in AWS (the token entry of both secrets)
// applied to the double. It then starts one node's sync rather than wait
// up to 10 minutes for its timer, and checks that the cluster holds the
// new token only: the old one no longer authenticates, the new one does.
// Nodes replaced by later drills join with the new token.
func (c *cluster) rotateJoinToken() (TokenRotation, error) {
	var r TokenRotation
	old, err := lab.DeclaredSecret(c.stack.declared, "-control-plane-join")
	if err != nil {
		return r, err
	}
	raw, generation, err := raiseTokenGeneration(c.stack.raw)
	if err != nil {
		return r, err
	}
	r.Generation = generation
	newer, err := declare(raw)
	if err != nil {
		return r, err
	}
	rotated, err := lab.DeclaredSecret(newer, "-control-plane-join")
	if err != nil {
		return r, err
	}
	oldToken, newToken := old["bootstrap-token"], rotated["bootstrap-token"]
	oldID, _, _ := strings.Cut(oldToken, ".")
	newID, _, _ := strings.Cut(newToken, ".")
	if oldID == newID {
		return r, fmt.Errorf("generation %d kept the token's ID %s", generation, oldID)
	}
	for _, suffix := range []string{"-control-plane", "-control-plane-join"} {
		if err := c.cloud.SetSecretEntry(c.stack.declared, suffix, "bootstrap-token", newToken); err != nil {
			return r, err
		}
	}
	start := time.Now()
	node := c.nodes[1]
	if _, err := node.Instance.Exec("systemctl", "start", bootstrap.TokenSyncUnit); err != nil {
		return r, fmt.Errorf("%w\n%s", err, node.UnitLog(bootstrap.TokenSyncUnit))
	}
	tokens, err := c.tokenIDs()
	if err != nil {
		return r, err
	}
	r.SyncSeconds = time.Since(start).Seconds()
	if !slices.Equal(tokens, []string{newID}) {
		return r, fmt.Errorf("after the sync the cluster holds tokens %v, want only %s\n%s", tokens, newID, node.UnitLog(bootstrap.TokenSyncUnit))
	}
	review := map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
	// Each API server drops the token once its informer sees the Secret
	// deleted.
	if _, err := c.waitFor("the old token refused", 30*time.Second, func() error {
		code, body, err := c.lbAnonymous.WithToken(oldToken).Do(http.MethodPost, "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
		if err != nil || code != http.StatusUnauthorized {
			return fmt.Errorf("the old token after rotation: HTTP %d %s (%v), want 401", code, body, err)
		}
		r.OldTokenStatus = code
		return nil
	}); err != nil {
		return r, err
	}
	code, body, err := c.lbAnonymous.WithToken(newToken).Do(http.MethodPost, "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
	var who struct {
		Status struct {
			UserInfo struct{ Username string }
		}
	}
	if err == nil {
		err = json.Unmarshal([]byte(body), &who)
	}
	if err != nil || code != http.StatusCreated || who.Status.UserInfo.Username != "system:bootstrap:"+newID {
		return r, fmt.Errorf("the new token: HTTP %d %s (%v), want system:bootstrap:%s", code, body, err, newID)
	}
	r.NewTokenUser = who.Status.UserInfo.Username
	return r, nil
}

// tokenIDs are the IDs of the bootstrap tokens the cluster holds.
func (c *cluster) tokenIDs() ([]string, error) {
	code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/namespaces/kube-system/secrets?fieldSelector=type%3Dbootstrap.kubernetes.io%2Ftoken", nil)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("listing bootstrap tokens: HTTP %d %s (%v)", code, body, err)
	}
	var list struct {
		Items []struct {
			Data map[string]string
		}
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, err
	}
	var ids []string
	for _, item := range list.Items {
		id, err := base64.StdEncoding.DecodeString(item.Data["token-id"])
		if err != nil {
			return nil, err
		}
		ids = append(ids, string(id))
	}
	slices.Sort(ids)
	return ids, nil
}

// raiseTokenGeneration is raw with controlPlane.joinTokenGeneration one
// higher, and that generation.
func raiseTokenGeneration(raw map[string]string) (map[string]string, int, error) {
	generation := 0
	out, err := withOptions(raw, "kubeha:controlPlane", func(options map[string]any) error {
		generation = 1
		if g, ok := options["joinTokenGeneration"].(float64); ok {
			generation = int(g)
		}
		generation++
		options["joinTokenGeneration"] = generation
		return nil
	})
	return out, generation, err
}
