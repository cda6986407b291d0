package workload

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"
)

// A caller records every call: the server's answers while it serves, and
// failures once it is gone, each with when it started and ended.
func TestCallRecordsEveryAnswer(t *testing.T) {
	srv := httptest.NewServer(Server("probe-1 worker-b"))
	var out bytes.Buffer
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { Call(srv.URL, &out, stop); close(done) }()
	time.Sleep(10 * CallInterval)
	srv.Close()
	time.Sleep(5 * CallInterval)
	close(stop)
	<-done

	var ok, failed int
	scanner := bufio.NewScanner(&out)
	for scanner.Scan() {
		var a Answer
		if err := json.Unmarshal(scanner.Bytes(), &a); err != nil {
			t.Fatalf("line %q: %v", scanner.Text(), err)
		}
		if a.At.Before(a.Started) {
			t.Errorf("answer %+v ends before it starts", a)
		}
		switch {
		case a.OK && a.Server == "probe-1 worker-b":
			ok++
		case !a.OK && a.Error != "":
			failed++
		default:
			t.Errorf("answer %+v is neither an answer from the server nor a failure", a)
		}
	}
	// About 10 calls while it served and 5 after; ticks can slip on a busy machine.
	if ok < 5 || failed < 2 {
		t.Errorf("%d answers and %d failures, want about 10 and 5", ok, failed)
	}
}
