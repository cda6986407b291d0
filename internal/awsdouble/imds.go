// Package awsdouble stands in for the AWS services a kubeha node talks to,
// on the wire, so that nodes booted from their exact user-data run the
// real AWS CLI and curl against it: EC2 volumes, Route 53 and the VPC's
// DNS, Secrets Manager, CloudWatch and S3 (Cloud, DNSServer), and the
// instance metadata service (IMDSv2) each node reaches at 169.254.169.254.
package awsdouble

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDSAddress is where every instance reaches its metadata service.
const IMDSAddress = "169.254.169.254"

// Instance is what the metadata service tells one instance about itself.
type Instance struct {
	ID, Zone, Region, PrivateIP, Hostname string
	// Role is the instance profile's role; its credentials are made up and
	// mean something to this double only.
	Role string
	// Tags are the instance's tags, as its launch template sets them.
	Tags map[string]string
	// PutResponseHopLimit is its launch template's
	// http_put_response_hop_limit; 0 is EC2's default, 1.
	PutResponseHopLimit int
}

// HopLimit is how many hops the metadata service's answers travel.
func (i Instance) HopLimit() int { return max(i.PutResponseHopLimit, 1) }

// IMDS serves one instance's metadata as EC2 does with IMDSv2 required
// (kubeha's launch templates set http_tokens=required): a PUT for a
// session token with a TTL of 1 to 21600 seconds, then GETs that carry it;
// a GET without a valid token is 401.
type IMDS struct {
	Instance Instance
	// TargetLifecycleState, if set, answers
	// meta-data/autoscaling/target-lifecycle-state: where the instance's
	// auto-scaling group is taking it.
	TargetLifecycleState func() string
	mu                   sync.Mutex
	tokens               map[string]time.Time
}

// NewIMDS is the metadata service of instance.
func NewIMDS(instance Instance) *IMDS {
	return &IMDS{Instance: instance, tokens: map[string]time.Time{}}
}

func (m *IMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		m.issueToken(w, r)
		return
	}
	if !m.validToken(r.Header.Get("X-aws-ec2-metadata-token")) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	value, ok := m.metadata()[strings.TrimPrefix(r.URL.Path, "/latest/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(value))
}

func (m *IMDS) issueToken(w http.ResponseWriter, r *http.Request) {
	ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
	switch {
	case r.Method != http.MethodPut:
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	case err != nil || ttl < 1 || ttl > 21600:
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return
	}
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	token := hex.EncodeToString(raw)
	m.mu.Lock()
	m.tokens[token] = time.Now().Add(time.Duration(ttl) * time.Second)
	m.mu.Unlock()
	w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
	_, _ = w.Write([]byte(token))
}

func (m *IMDS) validToken(token string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	expiry, ok := m.tokens[token]
	return ok && time.Now().Before(expiry)
}

// metadata is every path served under /latest/.
func (m *IMDS) metadata() map[string]string {
	i := m.Instance
	creds, _ := json.Marshal(map[string]string{
		"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": accessKeyID(i.ID),
		"SecretAccessKey": "double-" + i.ID, "Token": "double-session-" + i.ID,
		"LastUpdated": time.Now().UTC().Format(time.RFC3339), "Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
	})
	identity, _ := json.Marshal(map[string]string{
		"instanceId": i.ID, "availabilityZone": i.Zone, "region": i.Region, "privateIp": i.PrivateIP,
	})
	metadata := map[string]string{
		"meta-data/instance-id":                        i.ID,
		"meta-data/local-ipv4":                         i.PrivateIP,
		"meta-data/local-hostname":                     i.Hostname,
		"meta-data/hostname":                           i.Hostname,
		"meta-data/placement/availability-zone":        i.Zone,
		"meta-data/placement/region":                   i.Region,
		"meta-data/iam/security-credentials/":          i.Role,
		"meta-data/iam/security-credentials/" + i.Role: string(creds),
		"dynamic/instance-identity/document":           string(identity),
	}
	if m.TargetLifecycleState != nil {
		if state := m.TargetLifecycleState(); state != "" {
			metadata["meta-data/autoscaling/target-lifecycle-state"] = state
		}
	}
	return metadata
}
