package awsdouble

import (
	"crypto/x509"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/pki"
)

// signature is an Authorization header as the AWS CLI signs a request for
// service; the double reads only its credential scope.
func signature(service string) string {
	return "AWS4-HMAC-SHA256 Credential=ASIADOUBLE/20261203/eu-west-1/" + service +
		"/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0123abcd"
}

// send serves one request, signed for service unless service is "", and
// returns the answer's status and body.
func send(t *testing.T, c *Cloud, service string, r *http.Request) (int, string) {
	t.Helper()
	if service != "" {
		r.Header.Set("Authorization", signature(service))
		r.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
	}
	w := httptest.NewRecorder()
	c.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// query sends a Query protocol call (EC2, CloudWatch) as the AWS CLI does.
func query(t *testing.T, c *Cloud, service string, form url.Values) (int, string) {
	t.Helper()
	host := service + ".eu-west-1.amazonaws.com"
	r := httptest.NewRequest("POST", "https://"+host+"/", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	return send(t, c, service, r)
}

func decodeXML(t *testing.T, body string, v any) {
	t.Helper()
	if err := xml.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
}

// The service is the one the signature's scope names, so --endpoint-url
// works, or else the one the host names.
func TestRequestsGoToTheServiceTheyAreFor(t *testing.T) {
	for _, tc := range []struct{ host, auth, want string }{
		{"127.0.0.1:4443", signature("ec2"), EC2},
		{"ec2.eu-west-1.amazonaws.com", signature("monitoring"), CloudWatch},
		{"127.0.0.1", "", ""},
		{"ec2.eu-west-1.amazonaws.com", "", EC2},
		{"route53.amazonaws.com:443", "", Route53},
		{"secretsmanager.eu-west-1.amazonaws.com", "", SecretsManager},
		{"monitoring.eu-west-1.amazonaws.com", "", CloudWatch},
		{"c1-backups.s3.eu-west-1.amazonaws.com", "", S3},
		{"s3.eu-west-1.amazonaws.com", "", S3},
		{"c1-backups.s3.amazonaws.com", "", S3},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = tc.host
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if got, signed := serviceOf(r); got != tc.want || signed != (tc.auth != "") {
			t.Errorf("%s %q: %q signed=%v, want %q", tc.host, tc.auth, got, signed, tc.want)
		}
	}
}

// A node that got no credentials from IMDS sends unsigned requests, which
// each service refuses in its own way; the call log shows them.
func TestUnsignedRequestsAreRefused(t *testing.T) {
	c := NewCloud("eu-west-1")
	c.AddVolume(Volume{ID: "vol-1", Zone: "eu-west-1a"})
	r := httptest.NewRequest("POST", "https://ec2.eu-west-1.amazonaws.com/", strings.NewReader("Action=DescribeVolumes&Version=2016-11-15"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if code, body := send(t, c, "", r); code != http.StatusForbidden || !strings.Contains(body, "<Code>MissingAuthenticationToken</Code>") {
		t.Errorf("unsigned EC2 call: %d %s", code, body)
	}
	r = httptest.NewRequest("GET", "https://c1-backups.s3.eu-west-1.amazonaws.com/snapshots/a.db", nil)
	if code, body := send(t, c, "", r); code != http.StatusForbidden || !strings.Contains(body, "<Code>AccessDenied</Code>") {
		t.Errorf("unsigned S3 call: %d %s", code, body)
	}
	r = httptest.NewRequest("GET", "https://127.0.0.1/", nil)
	if code, _ := send(t, c, "", r); code != http.StatusNotFound {
		t.Errorf("a request for no service: %d, want 404", code)
	}
	calls := c.Calls()
	if len(calls) != 2 || calls[0] != (Call{EC2, "DescribeVolumes", calls[0].Time, 403}) || calls[1] != (Call{S3, "GetObject", calls[1].Time, 403}) {
		t.Errorf("calls: %+v", calls)
	}
}

// Throttling fails the next N calls of one action with the service's own
// throttling error; a delay holds calls back; a zero Fault clears both.
func TestFaults(t *testing.T) {
	c := NewCloud("eu-west-1")
	c.AddVolume(Volume{ID: "vol-1", Zone: "eu-west-1a"})
	describe := url.Values{"Action": {"DescribeVolumes"}, "Version": {"2016-11-15"}}
	c.Fault(EC2, "DescribeVolumes", Fault{Throttle: 2})
	for i := 0; i < 2; i++ {
		if code, body := query(t, c, EC2, describe); code != http.StatusServiceUnavailable || !strings.Contains(body, "<Code>RequestLimitExceeded</Code>") {
			t.Errorf("throttled call %d: %d %s", i, code, body)
		}
	}
	if code, body := query(t, c, EC2, describe); code != http.StatusOK {
		t.Errorf("the call after the throttled ones: %d %s", code, body)
	}
	if code, _ := query(t, c, EC2, url.Values{"Action": {"DetachVolume"}, "Version": {"2016-11-15"}, "VolumeId": {"vol-1"}}); code == http.StatusServiceUnavailable {
		t.Error("another action was throttled")
	}

	c.Fault(S3, "*", Fault{Throttle: 1})
	if code, body := send(t, c, S3, httptest.NewRequest("GET", "https://b.s3.eu-west-1.amazonaws.com/k", nil)); code != http.StatusServiceUnavailable || !strings.Contains(body, "<Code>SlowDown</Code>") {
		t.Errorf("throttled S3: %d %s", code, body)
	}
	c.Fault(Route53, "GetChange", Fault{Throttle: 1})
	if code, body := send(t, c, Route53, httptest.NewRequest("GET", "https://route53.amazonaws.com/2013-04-01/change/C1", nil)); code != http.StatusBadRequest || !strings.Contains(body, "<Code>Throttling</Code>") {
		t.Errorf("throttled Route 53: %d %s", code, body)
	}
	c.Fault(SecretsManager, "GetSecretValue", Fault{Throttle: 1})
	if code, body := secretsCall(t, c, "GetSecretValue", `{"SecretId":"x"}`); code != http.StatusBadRequest || !strings.Contains(body, `"__type":"ThrottlingException"`) {
		t.Errorf("throttled Secrets Manager: %d %s", code, body)
	}

	c.Fault(EC2, "DescribeVolumes", Fault{Delay: 80 * time.Millisecond})
	start := time.Now()
	if code, _ := query(t, c, EC2, describe); code != http.StatusOK || time.Since(start) < 80*time.Millisecond {
		t.Errorf("delayed call: %d after %v", code, time.Since(start))
	}
	c.Fault(EC2, "DescribeVolumes", Fault{})
	start = time.Now()
	if query(t, c, EC2, describe); time.Since(start) > 50*time.Millisecond {
		t.Errorf("a cleared fault still delays: %v", time.Since(start))
	}

	var statuses []int
	for _, call := range c.Calls() {
		if call.Service == EC2 && call.Action == "DescribeVolumes" {
			statuses = append(statuses, call.Status)
		}
	}
	if want := []int{503, 503, 200, 200, 200}; !slices.Equal(statuses, want) {
		t.Errorf("logged DescribeVolumes statuses %v, want %v", statuses, want)
	}
}

// A group's fault refuses only what its instances sign with the
// credentials the metadata service gave them; other callers, and the same
// call from another group's instance, are served.
func TestGroupFaults(t *testing.T) {
	c := NewCloud("eu-west-1")
	if err := c.AddBucket("assets"); err != nil {
		t.Fatal(err)
	}
	if err := c.PutObject("assets", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.JoinGroup("i-0refused", "cp-spare", "")
	c.JoinGroup("i-0served", "cp-c", "")
	c.FaultGroup("cp-spare", S3, "*", Fault{Refuse: "AccessDenied"})
	get := func(accessKey string) int {
		r := httptest.NewRequest("GET", "https://assets.s3.eu-west-1.amazonaws.com/k", nil)
		r.Header.Set("Authorization", strings.Replace(signature(S3), "ASIADOUBLE/", accessKey+"/", 1))
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		return w.Code
	}
	for _, tc := range []struct {
		caller    string
		accessKey string
		want      int
	}{
		{"the spare group's instance", accessKeyID("i-0refused"), http.StatusForbidden},
		{"another group's instance", accessKeyID("i-0served"), http.StatusOK},
		{"a caller outside any group", "AKIAOTHER", http.StatusOK},
	} {
		if got := get(tc.accessKey); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.caller, got, tc.want)
		}
	}
	if got := callerInstance(httptest.NewRequest("GET", "https://x.s3.amazonaws.com/?X-Amz-Credential="+accessKeyID("i-0abc")+"/20261203/eu-west-1/s3/aws4_request", nil)); got != "i-0abc" {
		t.Errorf("a presigned URL's instance: %q", got)
	}
	c.FaultGroup("cp-spare", S3, "*", Fault{})
	if got := get(accessKeyID("i-0refused")); got != http.StatusOK {
		t.Errorf("a cleared group fault still refuses: %d", got)
	}
}

// The server certificate covers every AWS host name a node in the region
// uses, and the test's IP, and nothing else.
func TestTLSConfigCoversTheAWSEndpoints(t *testing.T) {
	ca, err := pki.Issue(pki.Spec{CommonName: "test-ca", IsCA: true, ValidityHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := NewCloud("eu-west-1").TLSConfig(ca, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	for _, host := range []string{"ec2.eu-west-1.amazonaws.com", "route53.amazonaws.com", "secretsmanager.eu-west-1.amazonaws.com",
		"c1-backups.s3.eu-west-1.amazonaws.com", "s3.eu-west-1.amazonaws.com", "c1-backups.s3.amazonaws.com", "127.0.0.1"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	for _, host := range []string{"example.com", "ec2.us-east-1.amazonaws.com", "10.0.0.1"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err == nil {
			t.Errorf("%s is covered", host)
		}
	}
}

// An instance leaving a group with a termination hook waits on it; the
// hook's timeout lets it go, not released; one in a group without the
// hook goes at once.
func TestTerminationHookHoldsALeavingInstance(t *testing.T) {
	cloud := NewCloud("eu-west-1")
	gone := make(chan string, 2)
	cloud.OnTerminate = func(id string) { gone <- id }
	cloud.JoinGroup("i-0a", "workers-a", "")
	cloud.JoinGroup("i-0b", "control-plane-a", "")
	cloud.SetTerminationHook("workers-a", "drain", 200*time.Millisecond)
	if err := cloud.TerminateInGroup("i-0a"); err != nil {
		t.Fatal(err)
	}
	if g, _ := cloud.GroupInstance("i-0a"); g.State != TerminatingWait || g.Hook != "drain" {
		t.Errorf("leaving a group with the hook: %+v, want %s on drain", g, TerminatingWait)
	}
	if err := cloud.TerminateInGroup("i-0b"); err != nil {
		t.Fatal(err)
	}
	if id := <-gone; id != "i-0b" {
		t.Errorf("%s went first, want i-0b, whose group has no hook", id)
	}
	select {
	case id := <-gone:
		if g, _ := cloud.GroupInstance(id); id != "i-0a" || g.State != Terminating || g.Released {
			t.Errorf("after the hook's timeout: %s %+v, want i-0a gone, not released", id, g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the hook's timeout never let i-0a go")
	}
	if err := cloud.TerminateInGroup("i-none"); err == nil {
		t.Error("terminated an instance in no group")
	}
}
