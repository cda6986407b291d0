package rehearsal

import (
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/awsdouble"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
)

// Load balancer health checks the rehearsal compares.
const (
	healthCheckReadyz = "https-readyz" // kubeha's: HTTPS GET /readyz
	healthCheckTCP    = "tcp"          // kops' and Typhoon's: the port accepts TCP
)

// lbBinds are the folders the load balancer host has to itself.
var lbBinds = []string{"/etc/haproxy"}

// haproxyConfig is the NLB as haproxy: TCP passthrough on 6443 to every
// control-plane node, checked every interval, out after unhealthy and back
// after healthy checks in a row, as ApiLoadBalancer configures the NLB. A
// check not answered within the timeout fails, as on the NLB (without
// `timeout check`, haproxy would wait the whole interval). A server
// marked down has its connections reset, as ApiLoadBalancer's target group
// does to a target that turns unhealthy: a kubelet's or controller's
// long-lived connection to an API server cut from etcd moves to a healthy
// one. Every change of a check's result is logged with its time and
// duration.
func (c *cluster) haproxyConfig() string {
	h := c.stack.healthCheck
	check := fmt.Sprintf("check inter %s fall %d rise %d on-marked-down shutdown-sessions", haproxyTime(h.interval), h.unhealthy, h.healthy)
	var httpCheck string
	if c.check == healthCheckReadyz {
		check += " check-ssl verify none"
		httpCheck = "  option httpchk GET " + bootstrap.HealthCheckPath + "\n  http-check expect status 200\n"
	}
	var servers strings.Builder
	for i := range c.stack.zones {
		fmt.Fprintf(&servers, "  server %s %s.21:%d %s", nodeName(i), zoneNet(i), bootstrap.APIServerPort, check)
		if !c.registered[nodeName(i)] {
			servers.WriteString(" disabled")
		}
		servers.WriteString("\n")
	}
	return fmt.Sprintf(`global
  maxconn 4096
  log stdout format iso local0
  stats socket ipv4@%s:%d level admin
defaults
  mode tcp
  timeout connect %s
  timeout client 10m
  timeout server 10m
frontend api
  bind %s:%d
  default_backend apiservers
backend apiservers
  timeout check %s
  log global
  option log-health-checks
%s%slisten stats
  mode http
  bind %s:%d
  stats enable
  stats uri /stats
`, lbIP, lbAdmin, haproxyTime(h.timeout), lbIP, bootstrap.APIServerPort, haproxyTime(h.timeout), httpCheck, servers.String(), lbIP, lbStats)
}

// haproxyTime is a duration as haproxy reads it.
func haproxyTime(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// startHAProxy (re)starts haproxy with the current health check and the
// targets registered now.
func (c *cluster) startHAProxy() error {
	c.lbMu.Lock()
	defer c.lbMu.Unlock()
	c.lb.Stop("haproxy")
	path := filepath.Join(lbBinds[0], "haproxy.cfg")
	if err := os.WriteFile(filepath.Join(c.lb.Host.Root, path), []byte(c.haproxyConfig()), 0o644); err != nil {
		return err
	}
	return c.lb.Start("haproxy", "haproxy", "-db", "-f", path)
}

var quick = &http.Client{Timeout: 2 * time.Second}

// registerTargets keeps the load balancer's targets as an auto-scaling
// group keeps its target group's: an instance is registered once its
// launch hook is completed (in service), and a new instance, out of
// service until then, takes its predecessor's place. A lost instance
// stays registered, as on AWS, until its group replaces it: its failing
// health checks take it out of rotation meanwhile.
func (c *cluster) registerTargets(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(lab.PollInterval):
		}
		c.lbMu.Lock()
		for _, g := range c.nodes {
			if g.Instance == nil {
				continue
			}
			want := g.InService()
			if c.registered[g.Name] == want {
				continue
			}
			state := "maint"
			if want {
				state = "ready"
			}
			if err := haproxyCommand("set server apiservers/" + g.Name + " state " + state); err != nil {
				c.logf("load balancer: %s %s: %v", state, g.Name, err)
				continue
			}
			c.registered[g.Name] = want
		}
		c.lbMu.Unlock()
	}
}

// apiTargetGroup is the ARN of the API's target group, which the
// control-plane groups register their instances in.
func (c *cluster) apiTargetGroup() string {
	return fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:targetgroup/%s-api/lab", c.cloud.Region, awsdouble.AccountID, c.stack.clusterName)
}

// targetHealth is what DescribeTargetHealth says of instanceID in the
// API's target group, from haproxy: "healthy" for a registered server it
// sends requests to, "unhealthy" for one failing its checks, "unused" for
// one not registered (not in service yet, or leaving).
func (c *cluster) targetHealth(targetGroup, instanceID string) string {
	if targetGroup != c.apiTargetGroup() {
		return "unavailable"
	}
	for _, g := range c.nodes {
		if g.Instance == nil || g.Instance.ID != instanceID {
			continue
		}
		c.lbMu.Lock()
		registered := c.registered[g.Name]
		c.lbMu.Unlock()
		if !registered {
			return "unused"
		}
		up, err := c.backendUp()
		switch {
		case err != nil:
			return "unavailable"
		case up[g.Name]:
			return "healthy"
		}
		return "unhealthy"
	}
	return "unused"
}

// haproxyCommand sends one command to haproxy's runtime API; haproxy
// answers nothing but a blank line when it succeeds.
func haproxyCommand(command string) error {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", lbIP, lbAdmin), 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte(command + "\n")); err != nil {
		return err
	}
	answer, _ := io.ReadAll(conn)
	if text := strings.TrimSpace(string(answer)); text != "" {
		return fmt.Errorf("haproxy: %s", text)
	}
	return nil
}

// backendUp says, by node name, whether haproxy sends it traffic.
func (c *cluster) backendUp() (map[string]bool, error) {
	resp, err := quick.Get(fmt.Sprintf("http://%s:%d/stats;csv", lbIP, lbStats))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		return nil, err
	}
	up := map[string]bool{}
	for _, row := range rows {
		if len(row) > 17 && row[0] == "apiservers" && strings.HasPrefix(row[1], "cp-") {
			up[row[1]] = strings.HasPrefix(row[17], "UP")
		}
	}
	return up, nil
}

// loggedRemoval is when, after start, haproxy took the last of nodes out
// of rotation, as its own log stamps it. Polling its stats adds a poll
// and a stats call on a busy machine to what the stack's health check
// allows; the log line does not. The line may be written just after the
// stats show the change, so it is read again for a few seconds.
func (c *cluster) loggedRemoval(nodes map[string]bool, start time.Time) (time.Duration, bool) {
	for try := 0; try < 10; try++ {
		events, err := c.rotationEvents(start, time.Now())
		if err != nil {
			return 0, false
		}
		// The log is in time order: the last node's first DOWN is the
		// latest of them.
		down, last := map[string]bool{}, time.Time{}
		for _, e := range events {
			if nodes[e.node] && e.state == "DOWN" && !down[e.node] {
				down[e.node], last = true, e.at
			}
		}
		if len(down) == len(nodes) {
			return last.Sub(start), true
		}
		time.Sleep(300 * time.Millisecond)
	}
	return 0, false
}

// removedAfter is how long after start the load balancer took nodes out,
// from haproxy's log once polling saw them out after polled seconds; the
// polled time when the log has no line for it.
func (c *cluster) removedAfter(nodes map[string]bool, start time.Time, polled *float64) *float64 {
	if polled == nil {
		return nil
	}
	if logged, ok := c.loggedRemoval(nodes, start); ok && logged.Seconds() <= *polled {
		return seconds(logged)
	}
	return polled
}

// removalNote says when the load balancer took node out after a fault at
// start, and what its failed checks cost, or that it never did.
func (c *cluster) removalNote(node string, start time.Time, removal *float64) string {
	if removal == nil {
		return fmt.Sprintf("the load balancer kept %s in rotation for all %.0fs", node, time.Since(start).Seconds())
	}
	return fmt.Sprintf("the load balancer took %s out after %.1fs; its failed checks took %s", node, *removal, c.failedChecks(node, start))
}

// failedChecks lists how long each of node's failed health checks took,
// from since until haproxy took it out, from haproxy's log: what a
// failure costs on top of the interval.
func (c *cluster) failedChecks(node string, since time.Time) string {
	lines, err := c.haproxyLog(since, time.Now())
	if err != nil {
		return "(no haproxy log)"
	}
	var took []string
	for _, l := range lines {
		if !strings.HasPrefix(l.msg, "Health check for server apiservers/"+node+" failed") {
			continue
		}
		if _, duration, ok := strings.Cut(l.msg, "check duration: "); ok {
			ms, _, _ := strings.Cut(duration, ",")
			took = append(took, ms)
		}
		if strings.HasSuffix(l.msg, "DOWN.") {
			break // out of rotation: what came after did not count
		}
	}
	return strings.Join(took, ", ")
}

// rotationChange is haproxy's log of a server's state change.
var rotationChange = regexp.MustCompile(`Server apiservers/(\S+) is (UP|DOWN)`)

// rotationEvent is a time haproxy took a server out of rotation (DOWN)
// or back in (UP).
type rotationEvent struct {
	at          time.Time
	node, state string
}

// rotationEvents are the rotation changes in haproxy's log between from
// and to.
func (c *cluster) rotationEvents(from, to time.Time) ([]rotationEvent, error) {
	lines, err := c.haproxyLog(from, to)
	var events []rotationEvent
	for _, l := range lines {
		if m := rotationChange.FindStringSubmatch(l.msg); m != nil {
			events = append(events, rotationEvent{l.at, m[1], m[2]})
		}
	}
	return events, err
}

// rotationChanges lists, from haproxy's log, each time between from and to
// that a server went out of rotation or back in.
func (c *cluster) rotationChanges(from, to time.Time) []string {
	events, err := c.rotationEvents(from, to)
	if err != nil {
		return []string{"(no haproxy log)"}
	}
	var changes []string
	for _, e := range events {
		changes = append(changes, e.at.Format("15:04:05.0")+" "+e.node+" "+e.state)
	}
	return changes
}

// logLine is one timed line of haproxy's log.
type logLine struct {
	at  time.Time
	msg string
}

// haproxyLog is haproxy's log between from and to.
func (c *cluster) haproxyLog(from, to time.Time) ([]logLine, error) {
	data, err := os.ReadFile(c.lb.Log("haproxy"))
	if err != nil {
		return nil, err
	}
	var lines []logLine
	for _, line := range strings.Split(string(data), "\n") {
		stamp, msg, _ := strings.Cut(line, " ")
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil && !at.Before(from) && !at.After(to) {
			lines = append(lines, logLine{at, msg})
		}
	}
	return lines, nil
}

// outOfRotationLogs is, for each time between from and to that haproxy
// took a control-plane node out of rotation, what that node logged around
// it, if it still runs: its API server's lines (from every container's
// log, so a restart's too) and its kubelet's and containerd's, from
// stallLead before to stallTail after. They say why a node stopped
// answering when nothing replaced or restarted it.
func (c *cluster) outOfRotationLogs(from, to time.Time) []string {
	events, err := c.rotationEvents(from, to)
	if err != nil {
		return []string{"(no haproxy log)"}
	}
	var logs []string
	for _, e := range events {
		i := slices.IndexFunc(c.nodes, func(n *lab.NodeGroup) bool { return n.Name == e.node })
		if e.state != "DOWN" || i < 0 || c.nodes[i].Instance == nil {
			continue
		}
		since, until := e.at.Add(-stallLead).UTC(), e.at.Add(stallTail).UTC()
		script := fmt.Sprintf(`cat /proc/loadavg
for f in /var/log/pods/kube-system_kube-apiserver-*/kube-apiserver/*.log; do
  awk -v a=%[1]q -v b=%[2]q '$1 >= a && $1 <= b' "$f"
done | sort | tail -n 60
journalctl --no-pager --output short-iso --unit kubelet --unit containerd --since %[3]q --until %[4]q | tail -n 40
`, since.Format(time.RFC3339), until.Format(time.RFC3339), since.Format(time.DateTime)+" UTC", until.Format(time.DateTime)+" UTC")
		out, err := c.nodes[i].Instance.Exec("bash", "-c", script)
		logs = append(logs, fmt.Sprintf("%s out of rotation at %s (%v); its load now, then its API server's, kubelet's and containerd's lines from %s to %s:\n%s",
			e.node, e.at.UTC().Format("15:04:05.0"), err, since.Format(time.TimeOnly), until.Format(time.TimeOnly), out))
	}
	return logs
}

// How far around a node's removal from rotation outOfRotationLogs looks:
// requests through it began timing out some seconds before haproxy's
// checks gave up on it.
const (
	stallLead = 30 * time.Second
	stallTail = 15 * time.Second
)
