package rehearsal

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/tools"
)

// haproxy stands in for the NLB with the stack's own health check: the
// same path, interval, timeout and thresholds; the TCP variant checks only that
// the port connects. haproxy itself must accept the file.
func TestHAProxyFollowsTheStackHealthCheck(t *testing.T) {
	raw, err := config.ReadStackFile("../../stacks/Pulumi.prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	s := fromConfig(cfg)
	s.healthCheck = healthCheck{interval: 7 * time.Second, timeout: 4 * time.Second, healthy: 3, unhealthy: 2}
	c := &cluster{stack: s}
	haproxy := tools.Need(t, "haproxy")
	for _, check := range []string{healthCheckReadyz, healthCheckTCP} {
		c.check = check
		text := c.haproxyConfig()
		servers := strings.Count(text, " check inter 7000ms fall 2 rise 3")
		httpCheck := strings.Contains(text, "option httpchk GET /readyz") && strings.Contains(text, "check-ssl verify none")
		if servers != 3 || httpCheck != (check == healthCheckReadyz) || !strings.Contains(text, "mode tcp") || !strings.Contains(text, "timeout check 4000ms") {
			t.Errorf("%s: %d servers with the stack's timing, HTTPS /readyz check %v:\n%s", check, servers, httpCheck, text)
		}
		path := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(haproxy, "-c", "-f", path).CombinedOutput(); err != nil {
			t.Errorf("%s: haproxy -c refuses the config: %v\n%s", check, err, out)
		}
	}
}

// failedChecks reads haproxy's health-check log: the failures of one node
// since a time, up to the one that took it out.
func TestFailedChecksReadHAProxysLog(t *testing.T) {
	root := t.TempDir()
	c := &cluster{lb: &lab.Node{Name: "lb", Host: &netlab.Host{Root: root}}}
	log := `2026-11-25T13:56:26.225949+00:00 Health check for server apiservers/cp-b succeeded, reason: Layer7 check passed, code: 200, check duration: 6ms, status: 2/2 UP.
2026-11-25T13:56:30.000000+00:00 Health check for server apiservers/cp-a failed, reason: Layer4 timeout, check duration: 3000ms, status: 1/2 UP.
[WARNING]  (23415) : Health check for server apiservers/cp-b failed, reason: Layer7 timeout, check duration: 3001ms, status: 1/2 UP.
2026-11-25T13:56:40.241582+00:00 Health check for server apiservers/cp-b failed, reason: Layer7 timeout, check duration: 3001ms, status: 1/2 UP.
2026-11-25T13:56:49.246630+00:00 Health check for server apiservers/cp-b failed, reason: Layer7 timeout, check duration: 3002ms, status: 0/2 DOWN.
2026-11-25T13:56:49.246759+00:00 Server apiservers/cp-b is DOWN. 2 active and 0 backup servers left.
2026-11-25T13:56:59.000000+00:00 Health check for server apiservers/cp-b failed, reason: Layer7 wrong status, code: 500, check duration: 4ms, status: 0/2 DOWN.
`
	if err := os.WriteFile(c.lb.Log("haproxy"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	since, _ := time.Parse(time.RFC3339, "2026-11-25T13:56:20Z")
	if got, want := c.failedChecks("cp-b", since), "3001ms, 3002ms"; got != want {
		t.Errorf("failedChecks = %q, want %q", got, want)
	}
}

// A removal is timed by haproxy's own log line, not by when polling its
// stats saw it; with more than one node lost, by the last one out; with
// no line for a node, by the poll.
func TestRemovalIsWhenHAProxyLoggedIt(t *testing.T) {
	c := &cluster{lb: &lab.Node{Name: "lb", Host: &netlab.Host{Root: t.TempDir()}}}
	log := `2026-11-25T13:56:09.000000+00:00 Server apiservers/cp-b is DOWN. 2 active and 0 backup servers left.
2026-11-25T13:56:12.000000+00:00 Server apiservers/cp-b is UP. 3 active and 0 backup servers left.
2026-11-25T13:56:26.500000+00:00 Server apiservers/cp-a is DOWN. 2 active and 0 backup servers left.
2026-11-25T13:56:29.250000+00:00 Server apiservers/cp-b is DOWN. 1 active and 0 backup servers left.
2026-11-25T13:56:35.000000+00:00 Server apiservers/cp-a is DOWN. 1 active and 0 backup servers left.
`
	if err := os.WriteFile(c.lb.Log("haproxy"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	start, _ := time.Parse(time.RFC3339, "2026-11-25T13:56:10Z")
	polled := 21.0
	for _, tc := range []struct {
		nodes map[string]bool
		want  float64
	}{
		{map[string]bool{"cp-a": true}, 16.5},
		{map[string]bool{"cp-a": true, "cp-b": true}, 19.25},
		{map[string]bool{"cp-c": true}, polled},
	} {
		if got := c.removedAfter(tc.nodes, start, &polled); got == nil || *got != tc.want {
			t.Errorf("removal of %v = %v, want %v", slices.Sorted(maps.Keys(tc.nodes)), secs(got), tc.want)
		}
	}
	if got := c.removedAfter(map[string]bool{"cp-a": true}, start, nil); got != nil {
		t.Errorf("removal never polled = %v, want none", *got)
	}
}
