package awsdouble

import (
	"encoding/binary"
	"io"
	"maps"
	"net"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"
)

// hostTTL is the TTL of AWS endpoints and static names: short, so that a
// drill's change is seen soon.
const hostTTL = 5

// DNSServer is the rehearsal nodes' resolver. It answers, in this order:
// static names (AddHost), names in the Cloud's Route 53 hosted zones with
// their records once in sync, and every name under amazonaws.com with the
// double's address. Other names do not exist. It has no IPv6 addresses:
// AAAA queries for known names get an empty answer.
type DNSServer struct {
	// Cloud's hosted zones are served.
	Cloud *Cloud
	// AWS is the double's IPv4 address, the answer for *.amazonaws.com.
	AWS net.IP

	mu    sync.Mutex
	hosts map[string]net.IP
	// unknown counts the queries for names that do not exist, by name.
	unknown map[string]int
}

// NewDNSServer serves cloud's zones and points AWS endpoints at aws.
func NewDNSServer(cloud *Cloud, aws net.IP) *DNSServer {
	return &DNSServer{Cloud: cloud, AWS: aws, hosts: map[string]net.IP{}, unknown: map[string]int{}}
}

// AddHost makes name resolve to ip, replacing any earlier address.
func (d *DNSServer) AddHost(name string, ip net.IP) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hosts[normalName(name)] = ip
}

// Serve answers UDP queries on conn until it is closed.
func (d *DNSServer) Serve(conn net.PacketConn) error {
	buf := make([]byte, 65535)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		if resp := d.answer(buf[:n]); resp != nil {
			_, _ = conn.WriteTo(resp, addr)
		}
	}
}

// ServeTCP answers TCP queries, each prefixed by its length, on l until it
// is closed.
func (d *DNSServer) ServeTCP(l net.Listener) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			for {
				var size uint16
				if binary.Read(conn, binary.BigEndian, &size) != nil {
					return
				}
				query := make([]byte, size)
				if _, err := io.ReadFull(conn, query); err != nil {
					return
				}
				resp := d.answer(query)
				if resp == nil {
					return
				}
				if _, err := conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...)); err != nil {
					return
				}
			}
		}()
	}
}

// Unknown are the names asked for that did not exist (a Route 53 record
// not yet in sync, say, or a host only the internet has), with how often.
func (d *DNSServer) Unknown() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.unknown)
}

// lookup is name's IPv4 addresses and their TTL, and whether name exists.
func (d *DNSServer) lookup(name string) ([]net.IP, uint32, bool) {
	name = normalName(name)
	d.mu.Lock()
	ip, ok := d.hosts[name]
	d.mu.Unlock()
	if ok {
		return []net.IP{ip}, hostTTL, true
	}
	if rec, ok := d.Cloud.lookupZones(name); ok {
		var ips []net.IP
		for _, s := range rec.ips {
			ips = append(ips, net.ParseIP(s))
		}
		return ips, rec.ttl, ips != nil
	}
	if name == "amazonaws.com" || strings.HasSuffix(name, ".amazonaws.com") {
		return []net.IP{d.AWS}, hostTTL, true
	}
	return nil, 0, false
}

// answer is the response to a query, or nil if it cannot be parsed.
func (d *DNSServer) answer(query []byte) []byte {
	var p dnsmessage.Parser
	header, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	resp := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: header.ID, Response: true, Authoritative: true, RecursionDesired: header.RecursionDesired, RecursionAvailable: true},
		Questions: []dnsmessage.Question{q},
	}
	ips, ttl, ok := d.lookup(q.Name.String())
	switch {
	case !ok:
		resp.RCode = dnsmessage.RCodeNameError
		d.mu.Lock()
		d.unknown[normalName(q.Name.String())]++
		d.mu.Unlock()
	case q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET:
		for _, ip := range ips {
			a := dnsmessage.AResource{}
			copy(a.A[:], ip.To4())
			resp.Answers = append(resp.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: ttl},
				Body:   &a,
			})
		}
	}
	packed, err := resp.Pack()
	if err != nil {
		return nil
	}
	return packed
}
