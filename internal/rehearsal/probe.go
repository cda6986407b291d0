package rehearsal

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubeha/kubeha/internal/lab"
)

// probe writes and reads objects through the load balancer about ten
// times a second, and keeps every answer.
type probe struct {
	c       *cluster
	mu      sync.Mutex
	results []result
	acked   []ackedWrite
	// skipped counts ticks with no free slot.
	skipped int
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

type ackedWrite struct {
	name string
	at   time.Time
}

type result struct {
	started, at time.Time
	ok          bool
	// why a failed request failed: the method, then the error or the
	// HTTP status.
	why string
}

const (
	probeLabel = "kubeha.io/rehearsal-probe"
	probePath  = "/api/v1/namespaces/default/configmaps"
)

func (c *cluster) startProbe() *probe {
	p := &probe{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// loop starts a write-then-read every 100 ms, each on its own connection,
// at most 16 at once, so a request stuck on a dead node does not stop the
// others.
func (p *probe) loop() {
	defer close(p.done)
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	slots := make(chan struct{}, probeSlots)
	var running sync.WaitGroup
	defer running.Wait()
	for seq := 0; ; seq++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			// Every slot holds a request that has not timed out, which
			// probeSlots leaves room for: counted, so it cannot pass unseen.
			p.mu.Lock()
			p.skipped++
			p.mu.Unlock()
			continue
		}
		running.Add(1)
		go func() {
			defer func() { <-slots; running.Done() }()
			p.writeAndRead(fmt.Sprintf("probe-%06d", seq))
		}()
	}
}

func (p *probe) writeAndRead(name string) {
	started := time.Now()
	code, _, err := p.c.lbAdmin.Do("POST", probePath, map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "labels": map[string]any{probeLabel: "true"}},
		"data":     map[string]any{"written": started.Format(time.RFC3339Nano)},
	})
	wrote := err == nil && code == http.StatusCreated
	why := failure("POST", code, http.StatusCreated, err)
	read := false
	if wrote {
		code, _, err := p.c.lbAdmin.Do("GET", probePath+"/"+name, nil)
		read = err == nil && code == http.StatusOK
		why = failure("GET", code, http.StatusOK, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if wrote {
		p.acked = append(p.acked, ackedWrite{name, time.Now()})
	}
	p.results = append(p.results, result{started: started, at: time.Now(), ok: wrote && read, why: why})
}

// failure says why a request failed, "" if it got the code it wanted. The
// error's text after its last colon and space is the cause ("connection
// refused", "EOF"), without the address that would make each one unique;
// an expired certificate is named by its expiry, not the request's time.
func failure(method string, code, want int, err error) string {
	switch {
	case err != nil:
		text := err.Error()
		if _, expiry, ok := strings.Cut(text, "certificate has expired or is not yet valid: current time "); ok {
			_, expiry, _ = strings.Cut(expiry, " is after ")
			return method + ": a certificate that expired " + expiry
		}
		if i := strings.LastIndex(text, ": "); i >= 0 {
			text = text[i+2:]
		}
		return method + ": " + text
	case code != want:
		return fmt.Sprintf("%s: HTTP %d", method, code)
	}
	return ""
}

// close stops the probe; it is safe to call more than once.
func (p *probe) close() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

// window summarizes the probe's results between from and to: requests,
// failures, and the longest time without a success.
func (p *probe) window(from, to time.Time) windowStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := windowStats{}
	last := from
	var latencies []time.Duration
	for _, r := range p.results {
		if r.started.Before(from) || r.at.After(to) {
			continue
		}
		w.requests++
		if !r.ok {
			w.failures++
			if w.causes == nil {
				w.causes = map[string]int{}
			}
			w.causes[r.why]++
			w.lastFailure = max(w.lastFailure, r.at.Sub(from))
			continue
		}
		latencies = append(latencies, r.at.Sub(r.started))
		w.gap(last, r.at)
		last = r.at
	}
	w.gap(last, to)
	slices.Sort(latencies)
	for i, q := range []float64{0.5, 0.9, 0.99} {
		if len(latencies) > 0 {
			w.latency[i] = latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]
		}
	}
	w.skipped = p.skipped
	return w
}

// failureTimeline lists, second by second, the requests that failed
// between from and to and why: "15:04:05 3× POST: EOF".
func (p *probe) failureTimeline(from, to time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var lines []string
	count, last := 0, ""
	for _, r := range p.results {
		if r.ok || r.at.Before(from) || r.at.After(to) {
			continue
		}
		line := r.at.Format("15:04:05") + " " + r.why
		if line == last {
			count++
			continue
		}
		if count > 0 {
			lines = append(lines, fmt.Sprintf("%s (%d×)", last, count))
		}
		last, count = line, 1
	}
	if count > 0 {
		lines = append(lines, fmt.Sprintf("%s (%d×)", last, count))
	}
	return lines
}

// gap notes a time without a success from one moment to another.
func (w *windowStats) gap(from, to time.Time) {
	if to.Sub(from) > w.longestGap {
		w.longestGap, w.longestGapFrom = to.Sub(from), from
	}
}

// windowStats are what the probe saw between two times.
type windowStats struct {
	requests, failures int
	longestGap         time.Duration
	// longestGapFrom is when the longest gap began: the last success
	// before it, or the window's start.
	longestGapFrom time.Time
	// lastFailure is from the window's start to the end of its last
	// failed request: how long the fault showed.
	lastFailure time.Duration
	// latency of the successful requests: p50, p90, p99.
	latency [3]time.Duration
	// skipped is the probe's count of ticks without a free slot, so far.
	skipped int
	// causes counts the failures by why they failed.
	causes map[string]int
}

// causes lists the failures' causes, the most frequent first.
func (w windowStats) causeList() string {
	whys := slices.Collect(maps.Keys(w.causes))
	slices.SortFunc(whys, func(a, b string) int { return cmp.Or(w.causes[b]-w.causes[a], strings.Compare(a, b)) })
	var parts []string
	for _, why := range whys {
		parts = append(parts, fmt.Sprintf("%d× %s", w.causes[why], why))
	}
	return strings.Join(parts, ", ")
}

// patientGet GETs path through the load balancer until want(code), at
// most five tries. Right after a fault the API may be slow, or the request
// land on a node still settling: a 30 s timeout.
func (c *cluster) patientGet(path string, want func(code int) bool) (int, string, error) {
	api, err := lab.NewAPI(lbIP, c.endpoint, c.k8sCA, c.admin, 30*time.Second)
	if err != nil {
		return 0, "", err
	}
	var code int
	var body string
	for try := 0; try < 5; try++ {
		if code, body, err = api.Do("GET", path, nil); err == nil && want(code) {
			break
		}
		time.Sleep(time.Second)
	}
	return code, body, err
}

// listProbe lists the probe's objects (thousands of them) with query.
func (c *cluster) listProbe(query string) (string, error) {
	code, body, err := c.patientGet(probePath+"?"+query, func(code int) bool { return code == http.StatusOK })
	if err != nil || code != http.StatusOK {
		return "", fmt.Errorf("listing the probe's objects: HTTP %d %v", code, err)
	}
	return body, nil
}

// lostWrites lists acknowledged writes the cluster no longer has: every
// write acknowledged before the list was asked for must be in it.
func (p *probe) lostWrites() ([]string, error) {
	p.mu.Lock()
	acked := slices.Clone(p.acked)
	p.mu.Unlock()
	body, err := p.c.listProbe("labelSelector=" + probeLabel + "%3Dtrue")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
		}
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, item := range list.Items {
		have[item.Metadata.Name] = true
	}
	var lost []string
	for _, w := range acked {
		if !have[w.name] {
			lost = append(lost, w.name)
		}
	}
	return lost, nil
}

// rewind forgets the writes acknowledged after since, as restoring a
// snapshot taken then does, and says how many.
func (p *probe) rewind(since time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.acked[:0]
	for _, w := range p.acked {
		if w.at.Before(since) {
			kept = append(kept, w)
		}
	}
	n := len(p.acked) - len(kept)
	p.acked = kept
	return n
}

// readAll is a response's body, closed.
func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
