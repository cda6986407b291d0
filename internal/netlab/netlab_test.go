package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
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
