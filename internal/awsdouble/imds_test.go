package awsdouble

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func call(t *testing.T, method, url string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// IMDSv2 as EC2 enforces it with tokens required: no token, a wrong one,
// an expired one, a GET for a token or a TTL out of range are refused.
func TestIMDSRequiresSessionTokens(t *testing.T) {
	imds := NewIMDS(Instance{ID: "i-0a1", Zone: "eu-west-1a", Region: "eu-west-1", PrivateIP: "10.61.1.2", Hostname: "ip-10-61-1-2", Role: "kubeha-dev-etcd-a"})
	srv := httptest.NewServer(imds)
	defer srv.Close()
	ttl := func(s string) map[string]string { return map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": s} }

	if code, _ := call(t, "GET", srv.URL+"/latest/meta-data/instance-id", nil); code != http.StatusUnauthorized {
		t.Errorf("GET without a token: %d, want 401", code)
	}
	for _, bad := range []string{"", "0", "21601", "x"} {
		if code, _ := call(t, "PUT", srv.URL+"/latest/api/token", ttl(bad)); code != http.StatusBadRequest {
			t.Errorf("token with TTL %q: %d, want 400", bad, code)
		}
	}
	if code, _ := call(t, "GET", srv.URL+"/latest/api/token", ttl("60")); code != http.StatusMethodNotAllowed {
		t.Errorf("GET for a token: %d, want 405", code)
	}
	code, token := call(t, "PUT", srv.URL+"/latest/api/token", ttl("60"))
	if code != http.StatusOK || len(token) < 32 {
		t.Fatalf("PUT for a token: %d %q", code, token)
	}
	with := map[string]string{"X-aws-ec2-metadata-token": token}
	for path, want := range map[string]string{"meta-data/instance-id": "i-0a1", "meta-data/placement/availability-zone": "eu-west-1a",
		"meta-data/local-ipv4": "10.61.1.2", "meta-data/iam/security-credentials/": "kubeha-dev-etcd-a"} {
		if code, got := call(t, "GET", srv.URL+"/latest/"+path, with); code != http.StatusOK || got != want {
			t.Errorf("%s: %d %q, want %q", path, code, got, want)
		}
	}
	_, creds := call(t, "GET", srv.URL+"/latest/meta-data/iam/security-credentials/kubeha-dev-etcd-a", with)
	var c map[string]string
	if err := json.Unmarshal([]byte(creds), &c); err != nil || c["Code"] != "Success" || c["AccessKeyId"] == "" || c["Token"] == "" {
		t.Errorf("role credentials %q, want the JSON the AWS CLI reads", creds)
	}
	if code, _ := call(t, "GET", srv.URL+"/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": token + "x"}); code != http.StatusUnauthorized {
		t.Errorf("GET with a wrong token: %d, want 401", code)
	}
	imds.mu.Lock()
	imds.tokens[token] = time.Now().Add(-time.Second)
	imds.mu.Unlock()
	if code, _ := call(t, "GET", srv.URL+"/latest/meta-data/instance-id", with); code != http.StatusUnauthorized {
		t.Errorf("GET with an expired token: %d, want 401", code)
	}
	if code, _ := call(t, "PUT", srv.URL+"/latest/meta-data/nothing", ttl("60")); code != http.StatusUnauthorized {
		t.Errorf("a path outside the token endpoint with no token: %d, want 401", code)
	}
}

// An instance's metadata says where its auto-scaling group takes it, as
// EC2's autoscaling/target-lifecycle-state does: InService, then
// Terminated once it leaves; nothing for an instance in no group.
func TestIMDSTargetLifecycleState(t *testing.T) {
	cloud := NewCloud("eu-west-1")
	imds := NewIMDS(Instance{ID: "i-0a1"})
	imds.TargetLifecycleState = func() string { return cloud.TargetLifecycleState("i-0a1") }
	srv := httptest.NewServer(imds)
	defer srv.Close()
	state := func() (int, string) {
		_, token := call(t, "PUT", srv.URL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
		return call(t, "GET", srv.URL+"/latest/meta-data/autoscaling/target-lifecycle-state", map[string]string{"X-aws-ec2-metadata-token": token})
	}
	if code, _ := state(); code != http.StatusNotFound {
		t.Errorf("in no group: HTTP %d, want 404", code)
	}
	cloud.JoinGroup("i-0a1", "c1-etcd-a", "kubeha-node-healthy")
	cloud.SetTerminationHook("c1-etcd-a", "kubeha-etcd-leave", time.Hour)
	if code, body := state(); code != http.StatusOK || body != "InService" {
		t.Errorf("launching: HTTP %d %q, want InService", code, body)
	}
	if err := cloud.TerminateInGroup("i-0a1"); err != nil {
		t.Fatal(err)
	}
	if code, body := state(); code != http.StatusOK || body != "Terminated" {
		t.Errorf("held on its leave hook: HTTP %d %q, want Terminated", code, body)
	}
}
