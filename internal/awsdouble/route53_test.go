package awsdouble

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// changeBatch is a ChangeResourceRecordSetsRequest as botocore writes it.
func changeBatch(changes ...string) string {
	var b strings.Builder
	b.WriteString(`<ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Changes>`)
	for _, ch := range changes {
		f := strings.Fields(ch) // action name ttl ip...
		fmt.Fprintf(&b, `<Change><Action>%s</Action><ResourceRecordSet><Name>%s</Name><Type>A</Type><TTL>%s</TTL><ResourceRecords>`, f[0], f[1], f[2])
		for _, ip := range f[3:] {
			fmt.Fprintf(&b, `<ResourceRecord><Value>%s</Value></ResourceRecord>`, ip)
		}
		b.WriteString(`</ResourceRecords></ResourceRecordSet></Change>`)
	}
	b.WriteString(`</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>`)
	return b.String()
}

func route53Request(t *testing.T, c *Cloud, method, path, body string) (int, string) {
	t.Helper()
	return send(t, c, Route53, httptest.NewRequest(method, "https://route53.amazonaws.com/2013-04-01/"+path, strings.NewReader(body)))
}

func changeStatus(t *testing.T, c *Cloud, id string) string {
	t.Helper()
	code, body := route53Request(t, c, "GET", "change/"+strings.TrimPrefix(id, "/change/"), "")
	var resp struct {
		Status string `xml:"ChangeInfo>Status"`
	}
	decodeXML(t, body, &resp)
	if code != http.StatusOK || !strings.Contains(body, `<GetChangeResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">`) {
		t.Fatalf("GetChange %s: %d %s", id, code, body)
	}
	return resp.Status
}

func route53ErrorCode(t *testing.T, body string) string {
	t.Helper()
	var resp struct {
		Code string `xml:"Error>Code"`
	}
	decodeXML(t, body, &resp)
	return resp.Code
}

// A change is PENDING, then INSYNC after the propagation delay, and only
// then does DNS answer with its records; the API shows them at once.
func TestRoute53ChangesReachDNSOnceInSync(t *testing.T) {
	c := NewCloud("eu-west-1")
	c.PropagationDelay = 100 * time.Millisecond
	c.AddHostedZone("/hostedzone/Z1", "c1.kubeha.internal.")

	code, body := route53Request(t, c, "POST", "hostedzone/Z1/rrset/", changeBatch("UPSERT Etcd-A.c1.kubeha.internal. 30 10.61.1.2"))
	var resp struct {
		ID     string `xml:"ChangeInfo>Id"`
		Status string `xml:"ChangeInfo>Status"`
	}
	decodeXML(t, body, &resp)
	if code != http.StatusOK || resp.Status != "PENDING" || !strings.HasPrefix(resp.ID, "/change/C") ||
		!strings.Contains(body, `<ChangeResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">`) {
		t.Fatalf("ChangeResourceRecordSets: %d %s", code, body)
	}
	if ips := c.Resolve("etcd-a.c1.kubeha.internal"); ips != nil || changeStatus(t, c, resp.ID) != "PENDING" {
		t.Errorf("DNS answers %v while the change is pending", ips)
	}
	if _, body := route53Request(t, c, "GET", "hostedzone/Z1/rrset", ""); !strings.Contains(body, "<Name>etcd-a.c1.kubeha.internal.</Name><Type>A</Type><TTL>30</TTL><ResourceRecords><ResourceRecord><Value>10.61.1.2</Value>") {
		t.Errorf("ListResourceRecordSets: %s", body)
	}
	waitFor(t, func() bool { return changeStatus(t, c, resp.ID) == "INSYNC" })
	if ips := c.Resolve("ETCD-A.c1.kubeha.internal."); !slices.Equal(ips, []string{"10.61.1.2"}) {
		t.Errorf("DNS answers %v once in sync", ips)
	}

	c.PropagationDelay = 0
	if code, body := route53Request(t, c, "POST", "hostedzone/Z1/rrset/", changeBatch("DELETE etcd-a.c1.kubeha.internal 30 10.61.1.2")); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if ips := c.Resolve("etcd-a.c1.kubeha.internal"); ips != nil {
		t.Errorf("DNS answers %v after the delete", ips)
	}
}

// A batch is refused whole, as Route 53 does, if any change in it is wrong.
func TestRoute53RefusesBadChanges(t *testing.T) {
	c := NewCloud("eu-west-1")
	c.AddHostedZone("Z1", "c1.kubeha.internal")
	if code, body := route53Request(t, c, "POST", "hostedzone/Z1/rrset/", changeBatch("CREATE a.c1.kubeha.internal 30 10.0.0.1")); code != http.StatusOK {
		t.Fatalf("CREATE: %d %s", code, body)
	}
	for _, batch := range [][]string{
		{"CREATE b.c1.kubeha.internal 30 10.0.0.2", "CREATE a.c1.kubeha.internal 30 10.0.0.1"},
		{"UPSERT b.c1.kubeha.internal 30 10.0.0.2", "DELETE c.c1.kubeha.internal 30 10.0.0.3"},
		{"UPSERT b.c1.kubeha.internal 30 10.0.0.2", "DELETE a.c1.kubeha.internal 30 10.0.0.9"},
		{"UPSERT b.c1.kubeha.internal 30 10.0.0.2", "UPSERT b.other.internal 30 10.0.0.2"},
		{"UPSERT b.c1.kubeha.internal 30 10.0.0.2", "UPSERT d.c1.kubeha.internal 30 fe80::1"},
		{"UPSERT b.c1.kubeha.internal 30 10.0.0.2", "REPLACE d.c1.kubeha.internal 30 10.0.0.4"},
	} {
		if code, body := route53Request(t, c, "POST", "hostedzone/Z1/rrset/", changeBatch(batch...)); code != http.StatusBadRequest || route53ErrorCode(t, body) != "InvalidChangeBatch" {
			t.Errorf("%v: %d %s", batch, code, body)
		}
	}
	if ips := c.Resolve("b.c1.kubeha.internal"); ips != nil {
		t.Errorf("part of a refused batch was applied: %v", ips)
	}
	if _, body := route53Request(t, c, "GET", "hostedzone/Z1/rrset", ""); strings.Contains(body, "b.c1") {
		t.Errorf("part of a refused batch is listed: %s", body)
	}
	if code, body := route53Request(t, c, "POST", "hostedzone/Z9/rrset/", changeBatch("UPSERT a.c1.kubeha.internal 30 10.0.0.1")); code != http.StatusNotFound || route53ErrorCode(t, body) != "NoSuchHostedZone" {
		t.Errorf("a change to no zone: %d %s", code, body)
	}
	if code, body := route53Request(t, c, "GET", "change/CNOPE", ""); code != http.StatusNotFound || route53ErrorCode(t, body) != "NoSuchChange" {
		t.Errorf("GetChange of no change: %d %s", code, body)
	}
}
