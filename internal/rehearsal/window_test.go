package rehearsal

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// What a drill reports from the probe: the error window ends with the last
// failed request, the gap counts only successes, and the latencies are the
// successful requests' own.
func TestProbeWindow(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	p := &probe{results: []result{
		{started: at(0.0), at: at(0.1), ok: true},
		{started: at(0.2), at: at(3.2), ok: false}, // timed out
		{started: at(0.3), at: at(0.4), ok: false},
		{started: at(4.0), at: at(4.5), ok: true},
		{started: at(5.0), at: at(5.2), ok: true},
		{started: at(9.0), at: at(12), ok: true}, // after the window
	}, skipped: 2}
	w := p.window(at(0), at(6))
	if w.requests != 5 || w.failures != 2 {
		t.Errorf("%d requests, %d failures; want 5 and 2", w.requests, w.failures)
	}
	if w.lastFailure != 3200*time.Millisecond {
		t.Errorf("error window %s, want 3.2s: the end of the last failed request", w.lastFailure)
	}
	if w.longestGap != 4400*time.Millisecond {
		t.Errorf("longest gap %s, want 4.4s between successes", w.longestGap)
	}
	if !w.longestGapFrom.Equal(at(0.1)) {
		t.Errorf("longest gap from %s, want the success at 0.1s", w.longestGapFrom.Sub(t0))
	}
	var d Drill
	p.record(&d, at(0), at(6))
	if want := "4.4s, began " + at(0.1).Format(time.TimeOnly) + " (0s in); failed in it: " + at(3.2).Format("15:04:05"); !strings.Contains(d.Notes, want) {
		t.Errorf("notes %q, want %q", d.Notes, want)
	}
	// A gap of slow successes, with the one failure before it.
	slow := &probe{results: []result{
		{started: at(0.0), at: at(0.1), ok: true},
		{started: at(0.15), at: at(0.2), ok: false, why: "GET: EOF"},
		{started: at(0.25), at: at(0.3), ok: true},
		{started: at(0.35), at: at(3.0), ok: true},
	}}
	var slowDrill Drill
	slow.record(&slowDrill, at(0), at(3.0))
	if want := "2.7s, began " + at(0.3).Format(time.TimeOnly) + " (0s in); none failed in it"; !strings.Contains(slowDrill.Notes, want) {
		t.Errorf("notes %q, want %q", slowDrill.Notes, want)
	}
	if w.latency[0] != 200*time.Millisecond || w.latency[2] != 500*time.Millisecond {
		t.Errorf("latency p50 %s p99 %s, want 0.2s and 0.5s", w.latency[0], w.latency[2])
	}
	if w.skipped != 2 {
		t.Errorf("skipped %d, want 2", w.skipped)
	}
}

func TestReverseName(t *testing.T) {
	if ip := reverseName("11.1.210.10.in-addr.arpa"); ip.String() != "10.210.1.11" {
		t.Errorf("reverseName = %v, want 10.210.1.11", ip)
	}
	for _, name := range []string{"deb.debian.org", "1.10.in-addr.arpa", "x.1.210.10.in-addr.arpa"} {
		if ip := reverseName(name); ip != nil {
			t.Errorf("reverseName(%s) = %v, want none", name, ip)
		}
	}
}

func TestCoreDNSLoopCheck(t *testing.T) {
	// As the rehearsal's DNS double recorded them from CoreDNS's loop plugin.
	for _, name := range []string{"140128793231437193.5908248588748166613", "788305294710110984.3075076245743598694."} {
		if !coreDNSLoopCheck(name) {
			t.Errorf("coreDNSLoopCheck(%s) = false, want true", name)
		}
	}
	for _, name := range []string{"deb.debian.org", "1.2.3", "10.in-addr.arpa", "12.example", "123"} {
		if coreDNSLoopCheck(name) {
			t.Errorf("coreDNSLoopCheck(%s) = true, want false", name)
		}
	}
}

// The reconnect bound follows gRPC's backoff: after a 19 s outage the
// sixth delay (1.6^5 s, up to 20 % longer) can be pending; a short
// outage leaves the first; the cap holds.
func TestGRPCReconnect(t *testing.T) {
	for _, c := range []struct {
		outage time.Duration
		want   time.Duration
	}{
		{500 * time.Millisecond, 1200 * time.Millisecond},
		{19 * time.Second, time.Duration(1.2 * 10.48576 * float64(time.Second))},
		{time.Hour, 144 * time.Second},
	} {
		got := grpcReconnect(c.outage)
		if d := got - c.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("grpcReconnect(%s) = %s, want %s", c.outage, got, c.want)
		}
	}
}

// Only bootstrap-steps.sh's own failure lines count as retried steps, not
// a tool's output that says "failed" (kubeadm's tolerated preflight).
func TestRetriedSteps(t *testing.T) {
	log := "kubeha-etcd[etcd-a]: step volume failed (exit 254); retrying in 5s\n" +
		"[preflight] The system verification failed. Printing the output from the verification:\n" +
		"kubeha-etcd[etcd-a]: step volume failed (exit 254); retrying in 10s\n" +
		"kubeha-etcd[etcd-a]: step healthy failed (exit 1); retrying in 5s\n" +
		"kubeha-etcd[etcd-a]: bootstrap done in 90s\n"
	if got, want := retriedSteps(log), "volume 2 times, healthy once"; got != want {
		t.Errorf("retriedSteps = %q, want %q", got, want)
	}
	if got := retriedSteps("[preflight] The system verification failed."); got != "" {
		t.Errorf("a tool's own failure line counted as a retried step: %q", got)
	}
}

// A replacement's steps, in the order they finished, each with its time.
func TestStepTimes(t *testing.T) {
	log := "kubeha-control-plane[eu-west-1a]: step kubernetes done in 41s\n" +
		"kubeha-control-plane[eu-west-1a]: step kubeadm failed (exit 1); retrying in 5s\n" +
		"[kubelet-check] The kubelet is healthy after 1.2s, done in 3s\n" +
		"kubeha-control-plane[eu-west-1a]: step kubeadm done in 212s\n"
	if got, want := stepTimes(log), "kubernetes 41s, kubeadm 212s"; got != want {
		t.Errorf("stepTimes = %q, want %q", got, want)
	}
	if got := stepTimes("bootstrap failed (exit 1); systemd runs it again"); got != "no step done" {
		t.Errorf("stepTimes of a log with no finished step = %q", got)
	}
}

// The rotation runbook's stack edit: joinTokenGeneration one higher than
// the stack's (1 when unset), the other controlPlane keys kept.
func TestRaiseTokenGeneration(t *testing.T) {
	for _, c := range []struct {
		controlPlane string
		want         int
	}{{"", 2}, {`{"instanceType":"t3.medium"}`, 2}, {`{"instanceType":"t3.medium","joinTokenGeneration":4}`, 5}} {
		raw := map[string]string{"kubeha:zones": "[a,b,c]"}
		if c.controlPlane != "" {
			raw["kubeha:controlPlane"] = c.controlPlane
		}
		out, generation, err := raiseTokenGeneration(raw)
		if err != nil || generation != c.want || out["kubeha:zones"] != "[a,b,c]" ||
			!strings.Contains(out["kubeha:controlPlane"], fmt.Sprintf(`"joinTokenGeneration":%d`, c.want)) ||
			strings.Contains(c.controlPlane, "t3.medium") != strings.Contains(out["kubeha:controlPlane"], "t3.medium") {
			t.Errorf("%q: generation %d, %v (%v), want %d", c.controlPlane, generation, out, err, c.want)
		}
		if raw["kubeha:controlPlane"] != c.controlPlane {
			t.Errorf("the stack's own config was changed: %q", raw["kubeha:controlPlane"])
		}
	}
	if _, _, err := raiseTokenGeneration(map[string]string{"kubeha:controlPlane": "{"}); err == nil || !strings.Contains(err.Error(), "kubeha:controlPlane") {
		t.Errorf("unreadable controlPlane: %v, want an error naming the key", err)
	}
}

// A failed request's cause drops what makes each one unique: the address,
// and for an expired certificate the time of the request, so that a drill
// counts them together by the certificate's expiry.
func TestFailureCause(t *testing.T) {
	server := httptest.NewTLSServer(http.NotFoundHandler())
	defer server.Close()
	served := server.Certificate()
	roots := x509.NewCertPool()
	roots.AddCert(served)
	for _, at := range []time.Time{served.NotAfter.Add(time.Hour), served.NotAfter.Add(2 * time.Hour)} {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Time: func() time.Time { return at }}}}
		_, err := client.Post(server.URL+probePath, "application/json", nil)
		want := "POST: a certificate that expired " + served.NotAfter.UTC().Format(time.RFC3339)
		if got := failure("POST", 0, http.StatusCreated, err); got != want {
			t.Errorf("an expired certificate, asked at %s: %q, want %q", at, got, want)
		}
	}
	if got := failure("GET", 0, http.StatusOK, fmt.Errorf(`Get "https://10.0.0.1:6443%s": EOF`, probePath)); got != "GET: EOF" {
		t.Errorf("EOF: %q, want GET: EOF", got)
	}
	if got := failure("POST", http.StatusServiceUnavailable, http.StatusCreated, nil); got != "POST: HTTP 503" {
		t.Errorf("503: %q, want POST: HTTP 503", got)
	}
}

// Drill j's note on each control-plane node: its renewal's steps, in UTC,
// from the timer's log as journalctl prints it.
func TestRenewalSteps(t *testing.T) {
	log := `2026-12-06T13:44:05+0100 cp-a kubeha-cert-renewal[812]: kubeha-control-plane[eu-west-1a]: kubeadm's certificates have 79s left, under this node's 84s: renewing
2026-12-06T13:44:09+0100 cp-a kubeha-cert-renewal[812]: kubeha-control-plane[eu-west-1a]: restarting kube-scheduler
2026-12-06T13:45:40+0100 cp-a kubeha-cert-renewal[812]: kubeha-control-plane[eu-west-1a]: restarting kube-apiserver
2026-12-06T13:45:58+0100 cp-a kubeha-cert-renewal[812]: kubeha-control-plane[eu-west-1a]: kube-apiserver back
2026-12-06T13:46:01+0100 cp-a kubeha-cert-renewal[812]: kubeha-control-plane[eu-west-1a]: renewed: 31535999s left
2026-12-06T13:46:02+0100 cp-a systemd[1]: kubeha-cert-renewal.service: Deactivated successfully.`
	want := "12:44:05 renewing, 12:44:09 restarting kube-scheduler, 12:45:40 restarting kube-apiserver, 12:45:58 kube-apiserver back, 12:46:01 renewed"
	if got := renewalSteps(log); got != want {
		t.Errorf("renewal steps %q, want %q", got, want)
	}
	if got := renewalSteps("-- No entries --"); got != "none in its log" {
		t.Errorf("no renewal: %q", got)
	}
	from, to, ok := apiServerRestart(parseRenewalSteps(log))
	if !ok || from.UTC().Format(time.TimeOnly) != "12:45:40" || to.UTC().Format(time.TimeOnly) != "12:45:58" {
		t.Errorf("the API server restart: %v to %v (%v), want 12:45:40 to 12:45:58", from, to, ok)
	}
	if began, lead := renewalLead(parseRenewalSteps(log), time.Date(2026, 12, 6, 12, 44, 35, 0, time.UTC)); !began || lead != 30*time.Second {
		t.Errorf("renewal began %v before expiry (%v), want 30s", lead, began)
	}
	if began, lead := renewalLead(parseRenewalSteps(log), time.Date(2026, 12, 6, 12, 44, 0, 0, time.UTC)); !began || lead != -5*time.Second {
		t.Errorf("renewal began %v before expiry (%v), want -5s: after it", lead, began)
	}
	if began, _ := renewalLead(nil, time.Now()); began {
		t.Error("no renewal in the log, yet one began")
	}
	// A run still restarting its API server has not ended.
	unfinished := log + "\n2026-12-06T13:50:00+0100 cp-a kubeha-cert-renewal[900]: kubeha-control-plane[eu-west-1a]: restarting kube-apiserver"
	if from, to, ok := apiServerRestart(parseRenewalSteps(unfinished)); ok {
		t.Errorf("a restart under way: %v to %v, want not ended", from, to)
	}
}
