package lab

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/awsdouble"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/tools"
)

// The metadata service answers with the instance's hop limit as TTL, one
// hop from the instance: the instance gets role credentials at any limit,
// a pod behind it (its own namespace, routed by the node) only at 2.
func TestMetadataHopLimitKeepsPodsOut(t *testing.T) {
	if why := netlab.Available(); why != "" {
		tools.Unavailable(t, "the lab "+why)
	}
	node := oneNodeLab(t, "md", "10.202.0")
	// A Kubernetes node forwards its pods' traffic.
	if err := node.InHost("sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}
	pod, err := node.AddNeighbour("pod", "100.64.0.2", "100.64.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cloud{imds: map[*netlab.Host]*metadataService{}}
	defer c.Close()
	for _, hops := range []int{1, 2, 1} {
		if err := c.serveIMDS(node, awsdouble.Instance{ID: "i-0node", Role: "kubeha-node", PutResponseHopLimit: hops}); err != nil {
			t.Fatal(err)
		}
		if role, err := RoleCredentials(node, 3*time.Second); err != nil || role != "kubeha-node" {
			t.Errorf("hop limit %d: the node itself got role %q, %v; want kubeha-node", hops, role, err)
		}
		role, err := RoleCredentials(pod, 2*time.Second)
		if reached := err == nil; reached != (hops > 1) {
			t.Errorf("hop limit %d: a pod got role credentials %v (%q, %v)", hops, reached, role, err)
		}
		t.Logf("hop limit %d: pod: role %q, %v", hops, role, err)
	}
}

// oneNodeLab is a lab of one network, 10.x.y.0/24 of net ("10.202.0"),
// with one host, "node", at .11, removed when the test ends.
func oneNodeLab(t *testing.T, prefix, net string) *netlab.Host {
	t.Helper()
	l, err := netlab.New(fmt.Sprintf("%s%d", prefix, os.Getpid()%10000), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.AddNetwork("zone", net+".1"); err != nil {
		t.Fatal(err)
	}
	node, err := l.AddHostOn("zone", "node", net+".11", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return node
}
