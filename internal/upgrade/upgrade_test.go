package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// fakeCluster plays the API, the instances and the version record of a
// cluster of three zones, each with a control-plane node and a worker,
// and behaves as kubeha's nodes do: a new control-plane node's static
// pods take kubeadm-config's release, and a new node's kubelet the
// record's; the record's move makes control-plane kubelets follow. It
// logs what the upgrade did, and any moment a kubelet was newer than an
// API server.
type fakeCluster struct {
	mu            sync.Mutex
	nodes         map[string]*fakeNode
	clusterConfig string
	kubeProxy     string
	record        string
	// pods are the workers' pods by node; budgeted is a pod whose
	// PodDisruptionBudget refuses its first eviction.
	pods     map[string][]string
	budgeted string
	refused  bool
	// lateFollow: control-plane kubelets follow the record only at the
	// third listing of the Nodes after it, as slow timers would;
	// listingsSinceRecord counts those listings.
	lateFollow          bool
	listingsSinceRecord int
	events              []string
	skew                []string
	// etcd are the etcd members by name.
	etcd map[string]*fakeMember
}

// fakeMember is an etcd member's group of one: its instance's number,
// whether it runs the group's launch template version, its lifecycle
// state, and how many more listings it stays Pending:Wait.
type fakeMember struct {
	instance     int
	current      bool
	state        string
	pendingReads int
}

type fakeNode struct {
	zone, kubelet, apiServer string
	controlPlane, cordoned   bool
	// lbChecks counts the load balancer's health checks since the node's
	// replacement: it is a healthy target from the second on.
	lbChecks int
}

func newFakeCluster(version string) *fakeCluster {
	f := &fakeCluster{nodes: map[string]*fakeNode{}, clusterConfig: version, kubeProxy: version, record: version, pods: map[string][]string{}}
	for _, z := range []string{"a", "b", "c"} {
		f.nodes["cp-"+z] = &fakeNode{zone: "zone-" + z, kubelet: version, apiServer: version, controlPlane: true}
		f.nodes["worker-"+z] = &fakeNode{zone: "zone-" + z, kubelet: version}
		f.pods["worker-"+z] = []string{"default/probe-" + z, "kube-system/coredns-" + z}
	}
	f.budgeted = "kube-system/coredns-b"
	f.etcd = map[string]*fakeMember{}
	for _, z := range []string{"a", "b", "c"} {
		f.etcd["etcd-"+z] = &fakeMember{instance: 1, current: true, state: "InService"}
	}
	return f
}

// staleEtcd is `pulumi up` at a new etcd release: every member's group
// has a new launch template version; etcd-b is still launching.
func (f *fakeCluster) staleEtcd() {
	for _, m := range f.etcd {
		m.current = false
	}
	f.etcd["etcd-b"].state, f.etcd["etcd-b"].pendingReads = "Pending:Wait", 3
}

func (m *fakeMember) id(name string) string { return fmt.Sprintf("i-%s-%d", name, m.instance) }

func (f *fakeCluster) EtcdGroups(context.Context) ([]EtcdGroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var groups []EtcdGroup
	for _, name := range slices.Sorted(maps.Keys(f.etcd)) {
		m := f.etcd[name]
		if m.pendingReads > 0 {
			if m.pendingReads--; m.pendingReads == 0 {
				m.state = "InService"
			}
		}
		groups = append(groups, EtcdGroup{Member: name, Name: name + "-group", Instances: []GroupInstance{
			{ID: m.id(name), Zone: "zone-" + strings.TrimPrefix(name, "etcd-"), State: m.state, Healthy: true, Current: m.current}}})
	}
	return groups, nil
}

// ReplaceEtcdInstance boots a member of the group's template; it fails
// the upgrade if another member is not in service, which could cost the
// cluster its quorum.
func (f *fakeCluster) ReplaceEtcdInstance(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, m := range f.etcd {
		if m.id(name) != id {
			continue
		}
		for other, o := range f.etcd {
			if o.state != "InService" {
				return fmt.Errorf("%s replaced while %s is %s", name, other, o.state)
			}
		}
		m.instance, m.current = m.instance+1, true
		f.event("replace %s", name)
		return nil
	}
	return fmt.Errorf("no member runs %s", id)
}

func (f *fakeCluster) event(format string, args ...any) {
	f.events = append(f.events, fmt.Sprintf(format, args...))
	for name, n := range f.nodes {
		k, _ := bootstrap.ParseVersion(n.kubelet)
		for other, m := range f.nodes {
			if a, ok := bootstrap.ParseVersion(m.apiServer); ok && m.controlPlane && a.Less(k) {
				f.skew = append(f.skew, fmt.Sprintf("after %q: kubelet %s on %s, API server %s on %s", f.events[len(f.events)-1], n.kubelet, name, m.apiServer, other))
			}
		}
	}
}

func (f *fakeCluster) Do(method, path string, body any) (int, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(v any) (int, string, error) {
		out, err := json.Marshal(v)
		return http.StatusOK, string(out), err
	}
	switch {
	case method == "GET" && path == "/api/v1/nodes":
		if f.lateFollow && f.record != f.clusterConfig {
			// Not yet moved: a look or two finds them behind.
		} else if f.lateFollow {
			if f.listingsSinceRecord++; f.listingsSinceRecord == 3 {
				f.follow()
			}
		}
		var items []any
		for _, name := range slices.Sorted(maps.Keys(f.nodes)) {
			n := f.nodes[name]
			labels := map[string]string{bootstrap.ZoneLabel: n.zone}
			if n.controlPlane {
				labels[bootstrap.ControlPlaneLabel] = ""
			}
			items = append(items, map[string]any{"metadata": map[string]any{"name": name, "uid": name + "-uid", "labels": labels},
				"spec":   map[string]any{"unschedulable": n.cordoned},
				"status": map[string]any{"conditions": []any{map[string]string{"type": "Ready", "status": "True"}}, "nodeInfo": map[string]string{"kubeletVersion": n.kubelet}}})
		}
		return reply(map[string]any{"items": items})
	case method == "GET" && strings.HasPrefix(path, "/api/v1/namespaces/kube-system/pods?labelSelector="):
		var items []any
		for name, n := range f.nodes {
			if n.controlPlane {
				items = append(items, map[string]any{"spec": map[string]any{"nodeName": name, "containers": []any{map[string]string{"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:" + n.apiServer}}},
					"status": map[string]any{"conditions": []any{map[string]string{"type": "Ready", "status": "True"}}}})
			}
		}
		return reply(map[string]any{"items": items})
	case method == "GET" && path == kubeadmConfigPath:
		return reply(map[string]any{"data": map[string]string{"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkubernetesVersion: " + f.clusterConfig + "\nclusterName: test\n"}})
	case method == "GET" && path == kubeProxyPath:
		return reply(map[string]any{"metadata": map[string]any{"generation": 2, "name": "kube-proxy"},
			"spec":   map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:" + f.kubeProxy, "command": []string{"/usr/local/bin/kube-proxy"}}}}}},
			"status": map[string]any{"observedGeneration": 2, "desiredNumberScheduled": 6, "updatedNumberScheduled": 6, "numberAvailable": 6}})
	case method == "PUT" && path == kubeProxyPath:
		c := body.(map[string]any)["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		if c["command"] == nil {
			return http.StatusBadRequest, "the update dropped the container's command", nil
		}
		f.kubeProxy = imageVersion(c["image"].(string))
		f.event("kube-proxy %s", f.kubeProxy)
		return reply(body)
	case method == "DELETE" && strings.HasPrefix(path, "/api/v1/nodes/"):
		name := strings.TrimPrefix(path, "/api/v1/nodes/")
		if !f.nodes[name].cordoned || len(f.pods[name]) > 0 {
			return http.StatusConflict, "the test refuses to delete a Node not drained", nil
		}
		f.event("delete %s", name)
		return http.StatusOK, "{}", nil
	case method == "GET" && path == "/readyz":
		return http.StatusOK, "ok", nil
	case method == "GET" && strings.HasPrefix(path, "/api/v1/pods?fieldSelector="):
		node := strings.TrimPrefix(strings.ReplaceAll(path, "%3D", "="), "/api/v1/pods?fieldSelector=spec.nodeName=")
		var items []any
		for _, p := range f.pods[node] {
			ns, name, _ := strings.Cut(p, "/")
			items = append(items, map[string]any{"metadata": map[string]any{"name": name, "namespace": ns}})
		}
		items = append(items, map[string]any{"metadata": map[string]any{"name": "kube-proxy-" + node, "namespace": "kube-system", "ownerReferences": []any{map[string]string{"kind": "DaemonSet"}}}})
		return reply(map[string]any{"items": items})
	case method == "POST" && strings.HasSuffix(path, "/eviction"):
		parts := strings.Split(path, "/")
		pod := parts[4] + "/" + parts[6]
		if pod == f.budgeted && !f.refused {
			f.refused = true
			f.event("evict %s refused by its budget", pod)
			return http.StatusTooManyRequests, "Cannot evict pod as it would violate the pod's disruption budget.", nil
		}
		for node, pods := range f.pods {
			f.pods[node] = slices.DeleteFunc(pods, func(p string) bool { return p == pod })
		}
		f.event("evict %s", pod)
		return http.StatusCreated, "{}", nil
	}
	return http.StatusNotFound, method + " " + path + " is not faked", nil
}

func (f *fakeCluster) Patch(path string, patch any) (int, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case path == kubeadmConfigPath:
		cc := patch.(map[string]any)["data"].(map[string]string)["ClusterConfiguration"]
		if !strings.Contains(cc, "clusterName: test") {
			return http.StatusBadRequest, "the patch lost the rest of the ClusterConfiguration", nil
		}
		f.clusterConfig = clusterVersionLine.FindStringSubmatch(cc)[1]
		f.event("kubeadm-config %s", f.clusterConfig)
		return http.StatusOK, "{}", nil
	case strings.HasPrefix(path, "/api/v1/nodes/"):
		name := strings.TrimPrefix(path, "/api/v1/nodes/")
		f.nodes[name].cordoned = true
		f.event("cordon %s", name)
		return http.StatusOK, "{}", nil
	}
	return http.StatusNotFound, "PATCH " + path + " is not faked", nil
}

// Replace boots a node as kubeha's user-data does.
func (f *fakeCluster) Replace(_ context.Context, n Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	node := f.nodes[n.Name]
	if node.controlPlane {
		node.apiServer = f.clusterConfig
	} else if len(f.pods[n.Name]) > 0 {
		return fmt.Errorf("%s replaced with pods left: %v", n.Name, f.pods[n.Name])
	}
	node.kubelet, node.cordoned, node.lbChecks = f.record, false, 0
	f.event("replace %s", n.Name)
	return nil
}

// InLoadBalancer: a control-plane node is a healthy target once checked
// twice since its replacement.
func (f *fakeCluster) InLoadBalancer(_ context.Context, n Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	node := f.nodes[n.Name]
	if !node.controlPlane {
		return fmt.Errorf("%s is a worker, in no target group", n.Name)
	}
	if node.lbChecks++; node.lbChecks < 2 {
		return fmt.Errorf("%s is initial in the target group", n.Name)
	}
	if node.lbChecks == 2 {
		f.event("%s in the load balancer", n.Name)
	}
	return nil
}

func (f *fakeCluster) Read(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.record, nil
}

// Write moves the record; control-plane kubelets follow (kubelet-follow.sh).
func (f *fakeCluster) Write(_ context.Context, version string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record = version
	f.event("record %s", version)
	if !f.lateFollow {
		f.follow()
	}
	return nil
}

// follow swaps the control-plane kubelets to the record's release.
func (f *fakeCluster) follow() {
	moved := false
	for _, n := range f.nodes {
		if n.controlPlane && n.kubelet != f.record {
			n.kubelet, moved = f.record, true
		}
	}
	if moved {
		f.event("control-plane kubelets %s", f.record)
	}
}

func newUpgrade(f *fakeCluster, target string) *Upgrade {
	return &Upgrade{Target: target, API: f, Fleet: f, Record: f, Poll: 1, DrainTimeout: 1e9, NodeTimeout: 1e9}
}

// The upgrade runs kubeadm's and Cluster API's order, one node at a time,
// workers drained within their budgets, and no kubelet is ever newer
// than an API server.
func TestUpgradeOrder(t *testing.T) {
	f := newFakeCluster("v1.35.8")
	f.staleEtcd()
	u := newUpgrade(f, "v1.36.3")
	if err := u.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"replace etcd-a", "replace etcd-b", "replace etcd-c",
		"kubeadm-config v1.36.3",
		"replace cp-a", "cp-a in the load balancer", "replace cp-b", "cp-b in the load balancer", "replace cp-c", "cp-c in the load balancer",
		"record v1.36.3", "control-plane kubelets v1.36.3",
		"cordon worker-a", "evict default/probe-a", "evict kube-system/coredns-a", "delete worker-a", "replace worker-a",
		"cordon worker-b", "evict default/probe-b", "evict kube-system/coredns-b refused by its budget", "evict kube-system/coredns-b", "delete worker-b", "replace worker-b",
		"cordon worker-c", "evict default/probe-c", "evict kube-system/coredns-c", "delete worker-c", "replace worker-c",
		"kube-proxy v1.36.3",
	}
	if !slices.Equal(f.events, want) {
		t.Errorf("the upgrade did\n  %s\nwant\n  %s", strings.Join(f.events, "\n  "), strings.Join(want, "\n  "))
	}
	if len(f.skew) > 0 {
		t.Errorf("a kubelet was newer than an API server:\n  %s", strings.Join(f.skew, "\n  "))
	}
	if len(u.Replaced) != 9 || !u.Replaced[0].Etcd || u.Replaced[0].Node.Name != "etcd-a" || u.Replaced[3].Etcd {
		t.Errorf("replacements reported %+v, want 9: the 3 etcd members first", u.Replaced)
	}
	// Control-plane kubelets that follow late hold up the workers: none is
	// drained while an API server may still restart.
	late := newFakeCluster("v1.35.8")
	late.lateFollow = true
	if err := newUpgrade(late, "v1.36.3").Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if i := slices.Index(late.events, "record v1.36.3"); i < 0 || i+2 >= len(late.events) ||
		late.events[i+1] != "control-plane kubelets v1.36.3" || late.events[i+2] != "cordon worker-a" || late.listingsSinceRecord < 3 {
		t.Errorf("with control-plane kubelets following late (at the third look, %d taken), the upgrade did\n  %s\nwant the workers only after them", late.listingsSinceRecord, strings.Join(late.events, "\n  "))
	}
	// Run again, it has nothing left to do.
	f.events = nil
	if err := newUpgrade(f, "v1.36.3").Run(context.Background()); err != nil || len(f.events) > 0 {
		t.Errorf("a second run did %v (%v), want nothing", f.events, err)
	}
}

// A run stopped part way resumes where the cluster stands: a node already
// upgraded is left alone.
func TestUpgradeResumes(t *testing.T) {
	f := newFakeCluster("v1.35.8")
	f.clusterConfig = "v1.36.3"
	f.nodes["cp-a"].apiServer = "v1.36.3"
	if err := newUpgrade(f, "v1.36.3").Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.events[0] != "replace cp-b" || slices.Contains(f.events, "replace cp-a") || slices.ContainsFunc(f.events, func(e string) bool { return strings.HasPrefix(e, "kubeadm-config") }) {
		t.Errorf("resumed with %v, want cp-b replaced first and nothing before it", f.events)
	}
	steps := State{Nodes: []Node{{Name: "cp-b", ControlPlane: true, Kubelet: "v1.35.8"}}, APIServers: map[string]string{"cp-b": "v1.35.8"},
		ClusterConfig: "v1.36.3", KubeProxy: "v1.35.8", Recorded: "v1.35.8", Etcd: []EtcdGroup{
			{Member: "etcd-a", Instances: []GroupInstance{{ID: "i-a", State: "InService", Current: true}}},
			{Member: "etcd-b", Instances: []GroupInstance{{ID: "i-b", Zone: "zone-b", State: "InService"}}},
			{Member: "etcd-c", Instances: []GroupInstance{{ID: "i-c", State: "Terminating:Wait"}, {ID: "i-c2", State: "Pending:Wait", Current: true}}},
		}}.Steps("v1.36.3")
	if len(steps) != 4 || !strings.HasPrefix(steps[0], "replace etcd member etcd-b's instance i-b (zone zone-b)") || !strings.Contains(steps[1], "replace control-plane node cp-b") ||
		!strings.Contains(steps[2], "version record") || !strings.Contains(steps[3], "kube-proxy") {
		t.Errorf("steps %q", steps)
	}
	// etcd alone: a new etcd release at the same Kubernetes one.
	e := newFakeCluster("v1.36.3")
	e.staleEtcd()
	if err := newUpgrade(e, "v1.36.3").Run(context.Background()); err != nil || !slices.Equal(e.events, []string{"replace etcd-a", "replace etcd-b", "replace etcd-c"}) {
		t.Errorf("an etcd-only upgrade did %v (%v), want the 3 members replaced and nothing else", e.events, err)
	}
}

// A skew the policy forbids is refused before anything changes.
func TestUpgradeRefusesSkew(t *testing.T) {
	for name, c := range map[string]struct {
		running, target, refusal string
		kubeletAhead             bool
	}{
		"two minors, 1.35 to 1.37":  {"v1.35.8", "v1.37.0", "one minor at a time, to 1.36 first", false},
		"a downgrade, 1.36 to 1.35": {"v1.36.3", "v1.35.8", "newer than v1.35.8: kubeha never downgrades", false},
		"a kubelet ahead":           {"v1.35.8", "v1.35.8", "the kubelet on worker-b runs v1.36.3, newer than v1.35.8", true},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeCluster(c.running)
			f.staleEtcd()
			if c.kubeletAhead {
				f.nodes["worker-b"].kubelet = "v1.36.3"
			}
			err := newUpgrade(f, c.target).Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.refusal) {
				t.Errorf("error %v, want one saying %q", err, c.refusal)
			}
			if len(f.events) > 0 {
				t.Errorf("refused after %v, want before anything changed", f.events)
			}
		})
	}
}
