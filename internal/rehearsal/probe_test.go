package rehearsal

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/tools"
)

// haproxy stands in for the NLB with the stack's own health check: the
// same path, interval and thresholds; the TCP variant checks only that
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
	cfg.API.HealthCheck = config.HealthCheck{IntervalSeconds: 7, TimeoutSeconds: 4, HealthyThreshold: 3, UnhealthyThreshold: 2}
	c := &cluster{cfg: cfg}
	haproxy := tools.Need(t, "haproxy")
	for _, check := range []string{healthCheckReadyz, healthCheckTCP} {
		c.check = check
		text := c.haproxyConfig()
		servers := strings.Count(text, " check inter 7s fall 2 rise 3")
		httpCheck := strings.Contains(text, "option httpchk GET /readyz") && strings.Contains(text, "check-ssl verify none")
		if servers != 3 || httpCheck != (check == healthCheckReadyz) || !strings.Contains(text, "mode tcp") {
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
