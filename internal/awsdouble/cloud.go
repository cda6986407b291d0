package awsdouble

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/kubeha/kubeha/internal/pki"
)

// The services the double serves, by the name SigV4 signs requests for.
const (
	EC2            = "ec2"
	Route53        = "route53"
	SecretsManager = "secretsmanager"
	SSM            = "ssm"
	CloudWatch     = "monitoring"
	S3             = "s3"
	AutoScaling    = "autoscaling"
	LoadBalancing  = "elasticloadbalancing"
	STS            = "sts"
)

// Cloud is one rehearsal's AWS account: its volumes, instances, hosted
// zones, secrets, metrics and buckets, and an http.Handler speaking the wire
// protocol of each call kubeha's node scripts make with the AWS CLI.
//
// Nodes reach it by the real AWS host names, which the rehearsal's DNS
// (DNSServer) points at it. Signatures are not verified: the double only
// checks that a request is signed at all, so a node that could not fetch
// credentials from IMDS fails as it would on AWS.
type Cloud struct {
	// Region is the account's region, as in the endpoints' host names; it
	// is set by NewCloud.
	Region string
	// AttachDelay is how long EC2 takes to attach or detach a volume
	// after answering "attaching" or "detaching".
	AttachDelay time.Duration
	// PropagationDelay is how long a Route 53 change stays PENDING; its
	// records reach DNS only once it is INSYNC.
	PropagationDelay time.Duration
	// OnAttach makes the volume's block device appear in the instance, once
	// AttachDelay is over, on a goroutine of its own. The attachment
	// becomes "attached" only if it returns nil.
	OnAttach func(volumeID, instanceID, device string) error
	// OnDetach removes the volume's block device from the instance once it
	// is detached, or its instance terminated.
	OnDetach func(volumeID, instanceID string)
	// OnTerminate is what an instance's group does once asked to terminate
	// it (TerminateInstanceInAutoScalingGroup, desired capacity kept): end
	// it and launch a new one. It runs on a goroutine of its own.
	OnTerminate func(instanceID string)
	// TargetHealth is a load balancer's health check of instanceID in the
	// target group targetGroupARN: "healthy", "initial", "unhealthy",
	// "unused" or "draining", as DescribeTargetHealth reports it. With
	// none, every target is "unavailable".
	TargetHealth func(targetGroupARN, instanceID string) string
	// Logf reports what callers of the API cannot see, such as a failed
	// OnAttach. It defaults to log.Printf.
	Logf func(format string, args ...any)

	// mu guards everything below; hooks are called without it.
	mu        sync.Mutex
	instances map[string]Instance
	// groupInstances are the instances in auto-scaling groups, by ID.
	groupInstances map[string]*GroupInstance
	// terminationHooks are the groups' hooks on instances leaving them.
	terminationHooks map[string]terminationHook
	// groups are the auto-scaling groups SetGroup described, by name.
	groups map[string]*autoScalingGroup
	// targetGroups are the groups' target group ARNs, by group.
	targetGroups map[string][]string
	volumes      map[string]*Volume
	zones        map[string]*hostedZone
	changes      []*change
	secrets      []*secret
	parameters   map[string]*parameter
	metrics      []Metric
	faults       map[faultKey]*Fault
	calls        []Call

	apis    map[string]protocol
	s3store *s3mem.Backend
	s3      http.Handler
}

// NewCloud is an empty account in region, with EC2 taking a second to
// attach or detach a volume and Route 53 changes in sync at once.
func NewCloud(region string) *Cloud {
	c := &Cloud{
		Region:           region,
		AttachDelay:      time.Second,
		instances:        map[string]Instance{},
		groupInstances:   map[string]*GroupInstance{},
		terminationHooks: map[string]terminationHook{},
		groups:           map[string]*autoScalingGroup{},
		targetGroups:     map[string][]string{},
		volumes:          map[string]*Volume{},
		zones:            map[string]*hostedZone{},
		faults:           map[faultKey]*Fault{},
		s3store:          s3mem.New(),
	}
	c.s3 = gofakes3.New(c.s3store, gofakes3.WithHostBucketBase(c.s3Hosts()...)).Server()
	c.apis = c.protocols()
	return c
}

// apiError is an error as a service reports it.
type apiError struct {
	Status        int
	Code, Message string
}

// protocol is one service's wire protocol.
type protocol struct {
	// action names the call, for faults and the call log.
	action func(r *http.Request) string
	serve  func(w http.ResponseWriter, r *http.Request, action string)
	fail   func(w http.ResponseWriter, r *http.Request, e apiError)
	// throttled is the service's answer to too many requests.
	throttled apiError
}

func (c *Cloud) protocols() map[string]protocol {
	return map[string]protocol{
		EC2:            {queryAction, c.serveEC2, writeEC2Error, apiError{http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded."}},
		Route53:        {route53Action, c.serveRoute53, writeRoute53Error, apiError{http.StatusBadRequest, "Throttling", "Rate exceeded"}},
		SecretsManager: {jsonAction, c.serveSecretsManager, writeJSONError, apiError{http.StatusBadRequest, "ThrottlingException", "Rate exceeded"}},
		SSM:            {jsonAction, c.serveSSM, writeJSONError, apiError{http.StatusBadRequest, "ThrottlingException", "Rate exceeded"}},
		CloudWatch:     {queryAction, c.serveCloudWatch, writeCloudWatchError, apiError{http.StatusBadRequest, "Throttling", "Rate exceeded"}},
		AutoScaling:    {queryAction, c.serveAutoScaling, writeAutoScalingError, apiError{http.StatusBadRequest, "Throttling", "Rate exceeded"}},
		LoadBalancing: {queryAction, c.serveLoadBalancing, func(w http.ResponseWriter, _ *http.Request, e apiError) {
			writeQueryError(w, loadBalancingNamespace, e)
		},
			apiError{http.StatusBadRequest, "Throttling", "Rate exceeded"}},
		S3: {c.s3Action, c.serveS3, writeS3Error, apiError{http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."}},
		STS: {queryAction, c.serveSTS, func(w http.ResponseWriter, _ *http.Request, e apiError) { writeQueryError(w, stsNamespace, e) },
			apiError{http.StatusBadRequest, "Throttling", "Rate exceeded"}},
	}
}

// ServeHTTP answers one AWS API request: it finds the service, refuses an
// unsigned request, applies any fault set for the call, serves it and logs
// it.
func (c *Cloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	service, signed := serviceOf(r)
	p, ok := c.apis[service]
	if !ok {
		http.Error(w, "awsdouble: no AWS service here", http.StatusNotFound)
		return
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	action := p.action(r)
	defer func() { c.logCall(service, action, rec.status) }()

	if !signed {
		e := apiError{http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token"}
		if service == S3 {
			e = apiError{http.StatusForbidden, "AccessDenied", "Access Denied"}
		}
		p.fail(rec, r, e)
		return
	}
	delay, throttle, refuse := c.takeFault(service, action, callerInstance(r))
	sleep(r, delay)
	switch {
	case throttle:
		p.fail(rec, r, p.throttled)
		return
	case refuse != "":
		status := http.StatusBadRequest
		if service == S3 && refuse == "AccessDenied" {
			status = http.StatusForbidden // as S3 denies
		}
		p.fail(rec, r, apiError{status, refuse, "Refused by the rehearsal's fault."})
		return
	}
	p.serve(rec, r, action)
}

// serviceOf is the service a request is for: the one its SigV4 credential
// scope names (Credential=AKID/20261203/eu-west-1/ec2/aws4_request), so
// that clients given --endpoint-url work too, or else the one its host
// name names.
func serviceOf(r *http.Request) (service string, signed bool) {
	if scope := credentialOf(r); len(scope) == 5 {
		return scope[3], true
	}
	host := hostName(r)
	switch {
	case !strings.HasSuffix(host, ".amazonaws.com"):
		return "", false
	case strings.HasPrefix(host, "s3.") || strings.Contains(host, ".s3."):
		return S3, false
	default:
		service, _, _ = strings.Cut(host, ".")
		return service, false
	}
}

// credentialOf is a signed request's credential, split at its slashes:
// access key ID, date, region, service, "aws4_request".
func credentialOf(r *http.Request) []string {
	credential := r.URL.Query().Get("X-Amz-Credential") // a presigned URL
	if auth := r.Header.Get("Authorization"); auth != "" {
		_, credential, _ = strings.Cut(auth, "Credential=")
		credential, _, _ = strings.Cut(credential, ",")
	}
	return strings.Split(credential, "/")
}

// accessKeyPrefix starts the access key ID of an instance's role
// credentials, which carry the instance's ID (accessKeyID).
const accessKeyPrefix = "ASIADOUBLE"

// accessKeyID is the access key ID the metadata service gives instance id.
func accessKeyID(id string) string {
	return accessKeyPrefix + strings.ToUpper(hex.EncodeToString([]byte(id)))
}

// callerInstance is the instance whose role credentials signed r, or "".
func callerInstance(r *http.Request) string {
	key, ok := strings.CutPrefix(credentialOf(r)[0], accessKeyPrefix)
	if !ok {
		return ""
	}
	id, err := hex.DecodeString(strings.ToLower(key))
	if err != nil {
		return ""
	}
	return string(id)
}

// Fault makes a service misbehave for a drill.
type Fault struct {
	// Delay holds every matching call this long before it is answered.
	Delay time.Duration
	// Throttle fails the next Throttle matching calls with the service's
	// throttling error, which the AWS CLI retries a few times.
	Throttle int
	// Refuse fails every matching call with this error code (HTTP 400, or
	// 403 for S3's AccessDenied), which the AWS CLI does not retry, until
	// the fault is cleared.
	Refuse string
}

// faultKey is what a fault applies to: a service's action, or all its
// actions ("*"), called by anyone or by the instances of one
// auto-scaling group.
type faultKey struct{ service, action, group string }

// Fault sets the fault of a service's action (such as "ec2",
// "AttachVolume"), or of all its actions when action is "*". A zero Fault
// clears it.
func (c *Cloud) Fault(service, action string, f Fault) { c.FaultGroup("", service, action, f) }

// FaultGroup is Fault for the calls the instances of an auto-scaling
// group sign with their role's credentials only, as when the group's
// role lacks a permission; group "" is every caller.
func (c *Cloud) FaultGroup(group, service, action string, f Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f == (Fault{}) {
		delete(c.faults, faultKey{service, action, group})
		return
	}
	c.faults[faultKey{service, action, group}] = &f
}

// takeFault is the delay to apply to a call by instance (or ""), whether
// to throttle it (counting the throttled call) and the error to refuse it
// with. A fault for the instance's group comes before one for everyone.
func (c *Cloud) takeFault(service, action, instance string) (time.Duration, bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	group := "" // a caller outside any group: the keys repeat, harmlessly
	if g, ok := c.groupInstances[instance]; ok {
		group = g.Group
	}
	var f *Fault
	for _, key := range []faultKey{{service, action, group}, {service, "*", group}, {service, action, ""}, {service, "*", ""}} {
		if f = c.faults[key]; f != nil {
			break
		}
	}
	if f == nil {
		return 0, false, ""
	}
	if f.Throttle > 0 {
		f.Throttle--
		return f.Delay, true, ""
	}
	return f.Delay, false, f.Refuse
}

func sleep(r *http.Request, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-time.After(d):
	case <-r.Context().Done():
	}
}

// Call is one request the double answered.
type Call struct {
	Service, Action string
	Time            time.Time
	// Status is the HTTP status of the answer.
	Status int
}

// Calls is every request answered so far, oldest first.
func (c *Cloud) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Call(nil), c.calls...)
}

func (c *Cloud) logCall(service, action string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, Call{Service: service, Action: action, Time: time.Now(), Status: status})
}

func (c *Cloud) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

// TLSConfig is a server configuration for the double with a certificate
// signed by ca for every AWS host name a node uses in the Cloud's region,
// and for ips, at which tests reach it with --endpoint-url.
func (c *Cloud) TLSConfig(ca *pki.Pair, ips ...string) (*tls.Config, error) {
	pair, err := ca.Sign(pki.Spec{
		CommonName: "amazonaws.com",
		DNSNames: []string{"*.amazonaws.com", "route53.amazonaws.com", "*." + c.Region + ".amazonaws.com",
			"*.s3." + c.Region + ".amazonaws.com", "*.s3.amazonaws.com"},
		IPAddresses:   ips,
		Usages:        []pki.Usage{pki.ServerAuth},
		ValidityHours: pki.LeafValidityHours,
	})
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// requestID is a fresh request ID in the UUID form AWS uses.
func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
