package awsdouble

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

const route53Namespace = "https://route53.amazonaws.com/doc/2013-04-01/"

// hostedZone is a Route 53 zone of A records. records is what the API
// shows, served what DNS answers: changes reach it once in sync.
type hostedZone struct {
	id, name        string
	records, served map[string]record
}

type record struct {
	ttl uint32
	ips []string
}

// change is one ChangeResourceRecordSets call.
type change struct {
	id        string
	zone      *hostedZone
	submitted time.Time
	insync    time.Time
	ops       []recordChange
	applied   bool
}

type recordChange struct {
	action, name string
	record       record
}

// AddHostedZone adds a zone such as ("Z0123", "cluster.internal").
func (c *Cloud) AddHostedZone(id, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id = strings.TrimPrefix(id, "/hostedzone/")
	c.zones[id] = &hostedZone{id: id, name: normalName(name), records: map[string]record{}, served: map[string]record{}}
}

// AddRecord sets an A record in zone id at once, served too, as a record
// `pulumi up` created before anything looks it up.
func (c *Cloud) AddRecord(id, name string, ttl uint32, ips ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if z, ok := c.zones[strings.TrimPrefix(id, "/hostedzone/")]; ok {
		r := record{ttl: ttl, ips: ips}
		z.records[normalName(name)], z.served[normalName(name)] = r, r
	}
}

// Resolve is the addresses DNS answers for name: those of the changes in
// sync.
func (c *Cloud) Resolve(name string) []string {
	rec, _ := c.lookupZones(name)
	return rec.ips
}

// lookupZones is name's record as DNS serves it, and whether name is in a
// hosted zone at all.
func (c *Cloud) lookupZones(name string) (record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	name = normalName(name)
	var zone *hostedZone
	for _, z := range c.zones {
		if inZone(name, z.name) && (zone == nil || len(z.name) > len(zone.name)) {
			zone = z
		}
	}
	if zone == nil {
		return record{}, false
	}
	rec := zone.served[name]
	rec.ips = slices.Clone(rec.ips)
	return rec, true
}

// settle applies, in order, the changes whose propagation is over.
func (c *Cloud) settle() {
	now := time.Now()
	for _, ch := range c.changes {
		if ch.applied {
			continue
		}
		if now.Before(ch.insync) {
			return
		}
		for _, op := range ch.ops {
			if op.action == "DELETE" {
				delete(ch.zone.served, op.name)
			} else {
				ch.zone.served[op.name] = op.record
			}
		}
		ch.applied = true
	}
}

// normalName is a DNS name as the double keys it: lower case, without the
// trailing dot Route 53 may or may not be given.
func normalName(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

func inZone(name, zone string) bool {
	return name == zone || strings.HasSuffix(name, "."+zone)
}

// route53Action names a Route 53 REST call by its method and path, and
// gives the ID in its path.
func route53Action(r *http.Request) string {
	action, _ := route53Call(r)
	return action
}

func route53Call(r *http.Request) (action, id string) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/2013-04-01/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "change" && r.Method == http.MethodGet:
		return "GetChange", parts[1]
	case len(parts) >= 3 && parts[0] == "hostedzone" && parts[2] == "rrset" && r.Method == http.MethodPost:
		return "ChangeResourceRecordSets", parts[1]
	case len(parts) >= 3 && parts[0] == "hostedzone" && parts[2] == "rrset" && r.Method == http.MethodGet:
		return "ListResourceRecordSets", parts[1]
	}
	return r.Method + " " + r.URL.Path, ""
}

func (c *Cloud) serveRoute53(w http.ResponseWriter, r *http.Request, action string) {
	_, id := route53Call(r)
	var (
		resp any
		err  *apiError
	)
	switch action {
	case "ChangeResourceRecordSets":
		resp, err = c.changeRecordSets(r, id)
	case "GetChange":
		resp, err = c.getChange(id)
	case "ListResourceRecordSets":
		resp, err = c.listRecordSets(id)
	default:
		err = &apiError{http.StatusNotFound, "UnknownOperationException", "Unknown operation " + action}
	}
	if err != nil {
		writeRoute53Error(w, r, *err)
		return
	}
	writeXML(w, http.StatusOK, resp)
}

// rrset is a ResourceRecordSet on the wire.
type rrset struct {
	Name   string   `xml:"Name"`
	Type   string   `xml:"Type"`
	TTL    uint32   `xml:"TTL"`
	Values []string `xml:"ResourceRecords>ResourceRecord>Value"`
}

type changeInfo struct {
	ID          string `xml:"Id"`
	Status      string `xml:"Status"`
	SubmittedAt string `xml:"SubmittedAt"`
}

func (c *Cloud) changeRecordSets(r *http.Request, zoneID string) (any, *apiError) {
	var req struct {
		Changes []struct {
			Action string `xml:"Action"`
			Set    rrset  `xml:"ResourceRecordSet"`
		} `xml:"ChangeBatch>Changes>Change"`
	}
	if err := xml.NewDecoder(r.Body).Decode(&req); err != nil {
		return nil, &apiError{http.StatusBadRequest, "InvalidInput", "Invalid XML: " + err.Error()}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	zone, ok := c.zones[zoneID]
	if !ok {
		return nil, noSuchZone(zoneID)
	}
	// The batch is all or nothing: check it against a copy.
	records := map[string]record{}
	for name, rec := range zone.records {
		records[name] = rec
	}
	ch := &change{id: "C" + randomBase32(), zone: zone, submitted: time.Now()}
	ch.insync = ch.submitted.Add(c.PropagationDelay)
	for _, change := range req.Changes {
		name, set := normalName(change.Set.Name), change.Set
		rec := record{ttl: set.TTL, ips: set.Values}
		bad := func(format string, args ...any) (any, *apiError) {
			return nil, &apiError{http.StatusBadRequest, "InvalidChangeBatch", "[" + fmt.Sprintf(format, args...) + "]"}
		}
		switch {
		case !inZone(name, zone.name):
			return bad("RRSet with DNS name %s. is not permitted in zone %s.", name, zone.name)
		case set.Type != "A":
			return bad("RRSet of type %s for %s.: the double serves A records only", set.Type, name)
		case change.Action == "CREATE" && records[name].ips != nil:
			return bad("Tried to create resource record set [name='%s.', type='A'] but it already exists", name)
		case change.Action == "DELETE" && records[name].ips == nil:
			return bad("Tried to delete resource record set [name='%s.', type='A'] but it was not found", name)
		case change.Action == "DELETE" && (records[name].ttl != rec.ttl || !slices.Equal(records[name].ips, rec.ips)):
			return bad("Tried to delete resource record set [name='%s.', type='A'] but the values provided do not match the current values", name)
		case change.Action != "CREATE" && change.Action != "UPSERT" && change.Action != "DELETE":
			return bad("Unknown action %q", change.Action)
		}
		if change.Action != "DELETE" {
			if len(rec.ips) == 0 {
				return bad("RRSet %s. has no resource records", name)
			}
			for _, ip := range rec.ips {
				if parsed := net.ParseIP(ip); parsed == nil || parsed.To4() == nil {
					return bad("ARRDATAIllegalIPv4Address (Value is not a valid IPv4 address) encountered with '%s'", ip)
				}
			}
		}
		if change.Action == "DELETE" {
			delete(records, name)
		} else {
			records[name] = rec
		}
		ch.ops = append(ch.ops, recordChange{change.Action, name, rec})
	}
	if len(ch.ops) == 0 {
		return nil, &apiError{http.StatusBadRequest, "InvalidInput", "Invalid request: the change batch has no changes"}
	}
	zone.records = records
	c.changes = append(c.changes, ch)
	return struct {
		XMLName xml.Name   `xml:"https://route53.amazonaws.com/doc/2013-04-01/ ChangeResourceRecordSetsResponse"`
		Info    changeInfo `xml:"ChangeInfo"`
	}{Info: ch.info()}, nil
}

func (ch *change) info() changeInfo {
	status := "PENDING"
	if ch.applied {
		status = "INSYNC"
	}
	return changeInfo{ID: "/change/" + ch.id, Status: status, SubmittedAt: ch.submitted.UTC().Format("2006-01-02T15:04:05.000Z")}
}

func (c *Cloud) getChange(id string) (any, *apiError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	id = strings.TrimPrefix(id, "/change/")
	for _, ch := range c.changes {
		if ch.id == id {
			return struct {
				XMLName xml.Name   `xml:"https://route53.amazonaws.com/doc/2013-04-01/ GetChangeResponse"`
				Info    changeInfo `xml:"ChangeInfo"`
			}{Info: ch.info()}, nil
		}
	}
	return nil, &apiError{http.StatusNotFound, "NoSuchChange", "A change with the specified change ID does not exist."}
}

func (c *Cloud) listRecordSets(zoneID string) (any, *apiError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	zone, ok := c.zones[zoneID]
	if !ok {
		return nil, noSuchZone(zoneID)
	}
	resp := struct {
		XMLName     xml.Name `xml:"https://route53.amazonaws.com/doc/2013-04-01/ ListResourceRecordSetsResponse"`
		Sets        []rrset  `xml:"ResourceRecordSets>ResourceRecordSet"`
		IsTruncated bool     `xml:"IsTruncated"`
		MaxItems    int      `xml:"MaxItems"`
	}{MaxItems: 300}
	for name, rec := range zone.records {
		resp.Sets = append(resp.Sets, rrset{Name: name + ".", Type: "A", TTL: rec.ttl, Values: rec.ips})
	}
	sort.Slice(resp.Sets, func(i, j int) bool { return resp.Sets[i].Name < resp.Sets[j].Name })
	return resp, nil
}

func noSuchZone(id string) *apiError {
	return &apiError{http.StatusNotFound, "NoSuchHostedZone", "No hosted zone found with ID: " + id}
}

func writeRoute53Error(w http.ResponseWriter, _ *http.Request, e apiError) {
	writeQueryError(w, route53Namespace, e)
}

func randomBase32() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}
