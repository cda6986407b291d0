package awsdouble

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// startDNS serves d on UDP and TCP ports of 127.0.0.1 and returns their
// addresses.
func startDNS(t *testing.T, d *DNSServer) (udp, tcp string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); l.Close() })
	go func() { _ = d.Serve(pc) }()
	go func() { _ = d.ServeTCP(l) }()
	return pc.LocalAddr().String(), l.Addr().String()
}

// exchange asks server one question over network and returns the answer.
func exchange(t *testing.T, network, server, name string, qtype dnsmessage.Type) dnsmessage.Message {
	t.Helper()
	q := dnsmessage.Message{Header: dnsmessage.Header{ID: 7, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET}}}
	packed, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout(network, server, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 65535)
	var n int
	if network == "tcp" {
		_, err = conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(packed))), packed...))
		if err == nil {
			_, err = io.ReadFull(conn, buf[:2])
		}
		if err == nil {
			n, err = io.ReadFull(conn, buf[:binary.BigEndian.Uint16(buf)])
		}
	} else {
		if _, err = conn.Write(packed); err == nil {
			n, err = conn.Read(buf)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	var resp dnsmessage.Message
	if err := resp.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	if resp.ID != 7 || !resp.Response {
		t.Fatalf("%s: not an answer to the query: %+v", name, resp.Header)
	}
	return resp
}

func addresses(m dnsmessage.Message) (ips []string, ttls []uint32) {
	for _, a := range m.Answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			ips = append(ips, net.IP(r.A[:]).String())
			ttls = append(ttls, a.Header.TTL)
		}
	}
	return ips, ttls
}

// The nodes' resolver: AWS endpoints point at the double, hosted zones
// answer once their changes are in sync with the recorded TTL, static
// names answer, AAAA is empty for known names, and the rest is NXDOMAIN.
func TestDNSServer(t *testing.T) {
	c := NewCloud("eu-west-1")
	c.PropagationDelay = time.Hour
	c.AddHostedZone("Z1", "c1.kubeha.internal")
	d := NewDNSServer(c, net.ParseIP("10.99.0.2"))
	d.AddHost("api.c1.example.com", net.ParseIP("10.99.0.3"))
	udp, tcp := startDNS(t, d)

	for _, network := range []string{"udp", "tcp"} {
		for name, want := range map[string]string{"ec2.eu-west-1.amazonaws.com.": "10.99.0.2", "c1-backups.s3.eu-west-1.amazonaws.com.": "10.99.0.2",
			"ROUTE53.amazonaws.com.": "10.99.0.2", "api.c1.example.com.": "10.99.0.3"} {
			resp := exchange(t, network, map[string]string{"udp": udp, "tcp": tcp}[network], name, dnsmessage.TypeA)
			if ips, _ := addresses(resp); resp.RCode != dnsmessage.RCodeSuccess || !slices.Equal(ips, []string{want}) || !resp.Authoritative {
				t.Errorf("%s A %s: %v %v, want %s", network, name, resp.RCode, ips, want)
			}
		}
	}
	if resp := exchange(t, "udp", udp, "ec2.eu-west-1.amazonaws.com.", dnsmessage.TypeAAAA); resp.RCode != dnsmessage.RCodeSuccess || len(resp.Answers) != 0 {
		t.Errorf("AAAA of an AWS endpoint: %v %d answers, want an empty NOERROR", resp.RCode, len(resp.Answers))
	}
	for _, name := range []string{"example.org.", "etcd-a.c1.kubeha.internal."} {
		if resp := exchange(t, "udp", udp, name, dnsmessage.TypeA); resp.RCode != dnsmessage.RCodeNameError {
			t.Errorf("%s: %v, want NXDOMAIN", name, resp.RCode)
		}
	}

	// A pending change is not answered; once in sync it is, with its TTL.
	code, body := route53Request(t, c, "POST", "hostedzone/Z1/rrset/", changeBatch("UPSERT etcd-a.c1.kubeha.internal 30 10.61.1.2 10.61.1.3"))
	if code != http.StatusOK {
		t.Fatalf("ChangeResourceRecordSets: %d %s", code, body)
	}
	if resp := exchange(t, "udp", udp, "etcd-a.c1.kubeha.internal.", dnsmessage.TypeA); resp.RCode != dnsmessage.RCodeNameError {
		t.Errorf("a name whose change is pending: %v, want NXDOMAIN", resp.RCode)
	}
	c.mu.Lock()
	c.changes[0].insync = time.Now()
	c.mu.Unlock()
	resp := exchange(t, "udp", udp, "etcd-a.c1.kubeha.internal.", dnsmessage.TypeA)
	if ips, ttls := addresses(resp); !slices.Equal(ips, []string{"10.61.1.2", "10.61.1.3"}) || !slices.Equal(ttls, []uint32{30, 30}) {
		t.Errorf("in sync: %v %v", ips, ttls)
	}

	// Go's own resolver, which asks A and AAAA, gets the address alone.
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", udp)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ips, err := resolver.LookupHost(ctx, "secretsmanager.eu-west-1.amazonaws.com."); err != nil || !slices.Equal(ips, []string{"10.99.0.2"}) {
		t.Errorf("LookupHost: %v %v", ips, err)
	}
	var dnsErr *net.DNSError
	if _, err := resolver.LookupHost(ctx, "nothing.example.org."); err == nil || !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("LookupHost of an unknown name: %v, want not found", err)
	}
	// Every name that did not exist is counted, so a lab can tell which
	// hosts its nodes looked for beyond the doubles.
	unknown := d.Unknown()
	if unknown["example.org"] != 1 || unknown["nothing.example.org"] == 0 || unknown["etcd-a.c1.kubeha.internal"] != 2 || unknown["secretsmanager.eu-west-1.amazonaws.com"] != 0 {
		t.Errorf("unknown names counted %v", unknown)
	}
}
