//go:build rehearsal

package rehearsal

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/tools"
)

// TestRehearsal runs `kubeha rehearse --stack dev` and holds it to what
// kubeha claims: no acknowledged write lost, the API back after every
// drill, the Leases moving, and /readyz beating a TCP check. Timing bounds
// are generous; the report carries the real numbers.
func TestRehearsal(t *testing.T) {
	if why := Available(); why != "" {
		tools.Unavailable(t, "the rehearsal "+why)
	}
	if _, err := binPaths(); err != nil {
		tools.Unavailable(t, err.Error())
	}
	var log strings.Builder
	report, err := Run(context.Background(), Options{Stack: "dev", StackFile: "../../stacks/Pulumi.dev.yaml",
		WorkDir: filepath.Join(t.TempDir(), "rehearsal"), Log: &log})
	if report != nil {
		var table strings.Builder
		_ = report.WriteTable(&table)
		t.Logf("rehearsal report:\n%s", table.String())
	}
	if err != nil {
		t.Fatalf("rehearsal failed: %v\n%s", err, log.String())
	}
	if report.LostWrites != 0 || report.Writes == 0 {
		t.Errorf("%d of %d acknowledged writes lost", report.LostWrites, report.Writes)
	}
	byName := map[string]Drill{}
	for _, d := range report.Drills {
		byName[d.Name] = d
		if d.RecoverySeconds <= 0 || d.RecoverySeconds > 120 {
			t.Errorf("drill %s: recovery %.1fs, want the API back within 2 minutes", d.Name, d.RecoverySeconds)
		}
	}
	if len(byName) != len(drills) {
		t.Fatalf("%d drills reported, want %d", len(byName), len(drills))
	}
	a := byName["a"]
	if a.SchedulerLeaseSeconds == nil || a.ControllerManagerLeaseSecs == nil || *a.SchedulerLeaseSeconds > 90 || *a.ControllerManagerLeaseSecs > 90 {
		t.Errorf("drill a: Leases moved after %v / %v, want both within 90s", a.SchedulerLeaseSeconds, a.ControllerManagerLeaseSecs)
	}
	if b := byName["b"]; b.EtcdLeaderSeconds == nil || *b.EtcdLeaderSeconds > 30 {
		t.Errorf("drill b: new etcd leader after %v, want within 30s", b.EtcdLeaderSeconds)
	}
	readyz, tcp := byName["d"], byName["d-tcp"]
	if readyz.ErrorRate >= tcp.ErrorRate {
		t.Errorf("drill d: error rate with /readyz %.1f%%, with TCP %.1f%%; want /readyz lower", 100*readyz.ErrorRate, 100*tcp.ErrorRate)
	}
	// Run has returned: nothing of the lab may be left.
	namespaces, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(namespaces), labPrefix+"-") {
		t.Errorf("namespaces left behind:\n%s", namespaces)
	}
	if _, err := os.Stat("/sys/class/net/" + labPrefix + "-m"); err == nil {
		t.Error("the machine's link to the lab is still there")
	}
}
