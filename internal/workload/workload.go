// Package workload is the rehearsal's probe workload (the kubeha-probe
// image, hack/tools/probe): a server that answers with the pod and node it
// runs on, and a caller that calls a URL every 100 ms and prints one JSON
// line per answer, which the rehearsal reads back from the caller's log.
package workload

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// CallInterval is how often a caller starts a call; CallTimeout how long
// one may take.
const (
	CallInterval = 100 * time.Millisecond
	CallTimeout  = time.Second
)

// Answer is one call's outcome, one JSON line of a caller's output.
type Answer struct {
	Started time.Time `json:"started"`
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	Server  string    `json:"server,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Server answers every GET with name (the pod and node it runs on).
func Server(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) })
}

// Call calls url every CallInterval until stop is closed, each call on a
// new connection (a kept-alive one would pin every call to one Service
// endpoint, where a client's new connections spread), and writes each
// Answer to out as a JSON line.
func Call(url string, out io.Writer, stop <-chan struct{}) {
	client := &http.Client{Timeout: CallTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	enc := json.NewEncoder(out)
	var writing sync.Mutex
	var calls sync.WaitGroup
	defer calls.Wait()
	tick := time.NewTicker(CallInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case started := <-tick.C:
			calls.Add(1)
			go func() {
				defer calls.Done()
				a := call(client, url, started)
				writing.Lock()
				defer writing.Unlock()
				_ = enc.Encode(a)
			}()
		}
	}
}

func call(client *http.Client, url string, started time.Time) Answer {
	a := Answer{Started: started}
	resp, err := client.Get(url)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		a.OK, a.Server = resp.StatusCode == http.StatusOK, strings.TrimSpace(string(body))
		if !a.OK {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
	}
	if err != nil {
		a.Error = err.Error()
	}
	a.At = time.Now()
	return a
}
