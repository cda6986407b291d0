package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/kubeha/kubeha/internal/tools"
)

// A host's DialContext connects from inside its namespace: the machine's
// loopback listener is out of reach there, and every other connection of
// this process, made before, during and after, still leaves from the
// machine.
func TestDialContextDialsFromTheHost(t *testing.T) {
	if why := Available(); why != "" {
		tools.Unavailable(t, "the lab "+why)
	}
	lab, err := New(fmt.Sprintf("nt%d", os.Getpid()%10000), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	if err := lab.AddNetwork("flat", "10.201.0.1"); err != nil {
		t.Fatal(err)
	}
	h, err := lab.AddHostOn("flat", "h", "10.201.0.11", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	machine, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer machine.Close()
	go func() {
		for {
			c, err := machine.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := machine.Addr().String()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c, err := h.DialContext(context.Background(), "tcp", addr)
			if err == nil {
				c.Close()
				t.Errorf("the host reached the machine's loopback at %s", addr)
			} else if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("dialing from the host: %v, want its own loopback refusing", err)
			}
		}()
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Errorf("the machine lost its own loopback: %v", err)
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
}

// A run killed before Close leaves its namespaces behind. The next lab
// with the prefix clears them and starts; while a process still lives in
// one, it refuses and names the namespace, so a run going on is not broken.
func TestNewClearsALabKilledBeforeClose(t *testing.T) {
	if why := Available(); why != "" {
		tools.Unavailable(t, "the lab "+why)
	}
	prefix := fmt.Sprintf("nk%d", os.Getpid()%10000)
	killed, err := New(prefix, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := killed.AddNetwork("flat", "10.202.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := killed.ConnectMachine("10.202.254.2", "10.202.254.1", "10.202.0.0/16"); err != nil {
		t.Fatal(err)
	}
	h, err := killed.AddHostOn("flat", "h", "10.202.0.11", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killed.Close() })

	// A process in the host's namespace: the prefix is in use.
	sleeper := h.Command(nil, "sleep", "600")
	if err := h.Start(sleeper); err != nil {
		t.Fatal(err)
	}
	if _, err := New(prefix, t.TempDir()); err == nil || !strings.Contains(err.Error(), "namespace "+prefix+"-h,") {
		t.Fatalf("New beside a running lab: %v, want a refusal naming %s-h", err, prefix)
	}
	if len(killed.Namespaces()) != 2 {
		t.Fatalf("the refusal removed namespaces of the running lab: %v left", killed.Namespaces())
	}
	h.Stop(sleeper)

	// No process left: as a run killed by a timeout leaves things.
	next, err := New(prefix, t.TempDir())
	if err != nil {
		t.Fatalf("New after a killed run: %v", err)
	}
	defer next.Close()
	if left := next.Namespaces(); !slices.Equal(left, []string{prefix + "-hub"}) {
		t.Errorf("namespaces after New: %v, want only its own hub", left)
	}
	if linkExists(prefix + "-m") {
		t.Errorf("the killed lab's link to the machine %s-m is still there", prefix)
	}
	if _, err := os.Stat("/etc/netns/" + prefix + "-h"); !os.IsNotExist(err) {
		t.Errorf("the killed lab's hosts file is still there: %v", err)
	}
	if err := next.AddNetwork("flat", "10.202.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := next.ConnectMachine("10.202.254.2", "10.202.254.1", "10.202.0.0/16"); err != nil {
		t.Errorf("connecting the machine where the killed lab had: %v", err)
	}
}
