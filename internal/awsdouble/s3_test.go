package awsdouble

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// Buckets are addressed by host name, as the AWS CLI does on AWS, or by
// path, as with --endpoint-url; both reach the same objects.
func TestS3VirtualHostAndPathStyle(t *testing.T) {
	c := NewCloud("eu-west-1")
	if err := c.AddBucket("c1-backups"); err != nil {
		t.Fatal(err)
	}
	put := httptest.NewRequest("PUT", "https://c1-backups.s3.eu-west-1.amazonaws.com/snapshots/a.db", strings.NewReader("snapshot a"))
	put.Header.Set("Content-Length", "10")
	put.Header.Set("X-Amz-Server-Side-Encryption", "aws:kms")
	if code, body := send(t, c, S3, put); code != http.StatusOK {
		t.Fatalf("virtual-hosted PUT: %d %s", code, body)
	}
	if data, err := c.Object("c1-backups", "snapshots/a.db"); err != nil || string(data) != "snapshot a" {
		t.Errorf("Object: %q %v", data, err)
	}
	if err := c.PutObject("c1-backups", "snapshots/b.db", []byte("snapshot b")); err != nil {
		t.Fatal(err)
	}
	// The AWS CLI's download starts with a HEAD, and stops without Last-Modified.
	head := httptest.NewRecorder()
	headReq := httptest.NewRequest("HEAD", "https://c1-backups.s3.eu-west-1.amazonaws.com/snapshots/b.db", nil)
	headReq.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261203/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x")
	c.ServeHTTP(head, headReq)
	if head.Code != http.StatusOK || head.Header().Get("Last-Modified") == "" {
		t.Errorf("HEAD of a stored object: %d, Last-Modified %q", head.Code, head.Header().Get("Last-Modified"))
	}
	for _, url := range []string{"https://c1-backups.s3.amazonaws.com/snapshots/b.db", "https://s3.eu-west-1.amazonaws.com/c1-backups/snapshots/b.db",
		"https://127.0.0.1:8443/c1-backups/snapshots/b.db", "https://c1-backups.s3.eu-west-1.amazonaws.com:8443/snapshots/b.db"} {
		if code, body := send(t, c, S3, httptest.NewRequest("GET", url, nil)); code != http.StatusOK || body != "snapshot b" {
			t.Errorf("GET %s: %d %q", url, code, body)
		}
	}
	code, body := send(t, c, S3, httptest.NewRequest("GET", "https://c1-backups.s3.eu-west-1.amazonaws.com/?list-type=2&prefix=snapshots%2F&delimiter=%2F&encoding-type=url", nil))
	if code != http.StatusOK || !strings.Contains(body, "<Key>snapshots/a.db</Key>") || !strings.Contains(body, "<Key>snapshots/b.db</Key>") {
		t.Errorf("ListObjectsV2: %d %s", code, body)
	}
	if keys, err := c.List("c1-backups", "snapshots/"); err != nil || !slices.Equal(keys, []string{"snapshots/a.db", "snapshots/b.db"}) {
		t.Errorf("List: %v %v", keys, err)
	}
	if keys, err := c.List("c1-backups", "other/"); err != nil || keys != nil {
		t.Errorf("List of an empty prefix: %v %v", keys, err)
	}
	if _, err := c.Object("c1-backups", "nothing"); err == nil {
		t.Error("Object of no key")
	}

	var actions []string
	for _, call := range c.Calls() {
		actions = append(actions, call.Action)
	}
	if want := []string{"PutObject", "HeadObject", "GetObject", "GetObject", "GetObject", "GetObject", "ListObjectsV2"}; !slices.Equal(actions, want) {
		t.Errorf("calls %v, want %v", actions, want)
	}
}
