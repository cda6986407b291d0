// Package upgrade moves a running cluster to the Kubernetes release its
// stack now names, after `pulumi up` gave the nodes' launch templates that
// release, in the order kubeadm and Cluster API's KubeadmControlPlane
// use:
//
//  0. etcd members whose launch template changed (etcd.version, say) are
//     replaced one at a time, each only while every member is in service,
//     and its instance held until the others are healthy voters;
//  1. kubeadm-config's kubernetesVersion moves to the new release, so
//     that a control-plane node that joins builds its static pods from it;
//  2. control-plane nodes are replaced one zone at a time, each until its
//     API server serves the new release and is ready, and the load
//     balancer sends it requests;
//  3. the version record moves: control-plane kubelets, held at the old
//     release while any API server ran it, follow in place one node at a
//     time, and new nodes boot the new kubelet; step 4 waits for them;
//  4. workers are replaced one zone at a time, each cordoned and drained
//     through the eviction API (which keeps PodDisruptionBudgets) first;
//  5. kube-proxy's DaemonSet moves to the new release, once every node
//     has it.
//
// Every step reads the cluster as it is before acting, so a run stopped
// anywhere is resumed by running it again. Nothing here knows about
// Pulumi; the caller gives the cluster's API, its instances and its
// version record.
package upgrade

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// API is the cluster's Kubernetes API, as its admin, through the load
// balancer: Do sends body as JSON, Patch as a JSON merge patch.
type API interface {
	Do(method, path string, body any) (int, string, error)
	Patch(path string, patch any) (int, string, error)
}

// Fleet replaces instances as their auto-scaling groups do: an instance
// is terminated and its group launches a new one from its launch
// template.
type Fleet interface {
	Replace(ctx context.Context, node Node) error
	// InLoadBalancer fails unless node's instance is a healthy target of
	// its group's load balancers.
	InLoadBalancer(ctx context.Context, node Node) error
	// EtcdGroups are the cluster's etcd members' groups, as Auto Scaling
	// reports them.
	EtcdGroups(ctx context.Context) ([]EtcdGroup, error)
	// ReplaceEtcdInstance terminates an etcd member's instance in its group.
	ReplaceEtcdInstance(ctx context.Context, instanceID string) error
}

// EtcdGroup is an etcd member's auto-scaling group of one.
type EtcdGroup struct {
	Member, Name string
	Instances    []GroupInstance
}

// GroupInstance is an instance in its group.
type GroupInstance struct {
	ID, Zone string
	// State is its lifecycle state: Pending:Wait until its launch hook
	// finds the member a healthy voter, InService, Terminating:Wait while
	// its leave hook holds it, and so on.
	State   string
	Healthy bool
	// Current says it runs the group's launch template version.
	Current bool
}

// stale is the group's instance in service that runs an older launch
// template version, nil if none.
func (g EtcdGroup) stale() *GroupInstance {
	for _, i := range g.Instances {
		if !i.Current && (i.State == "InService" || i.State == "Pending:Wait") {
			return &i
		}
	}
	return nil
}

// steady fails unless the group has one instance, in service and healthy.
func (g EtcdGroup) steady() error {
	if len(g.Instances) != 1 || g.Instances[0].State != "InService" || !g.Instances[0].Healthy {
		var states []string
		for _, i := range g.Instances {
			states = append(states, fmt.Sprintf("%s %s (healthy: %t)", i.ID, i.State, i.Healthy))
		}
		return fmt.Errorf("etcd member %s's group has %s", g.Member, cmp.Or(strings.Join(states, ", "), "no instance"))
	}
	return nil
}

// Record is the cluster's version record (bootstrap.RunningVersionParameter):
// the release every API server runs.
type Record interface {
	Read(ctx context.Context) (string, error)
	Write(ctx context.Context, version string) error
}

// Upgrade moves the cluster to Target.
type Upgrade struct {
	Target string
	API    API
	Fleet  Fleet
	Record Record
	Logf   func(format string, args ...any)
	// NodeTimeout is how long a replaced node may take to serve again;
	// DrainTimeout how long a worker's pods may take to be evicted (a
	// PodDisruptionBudget can hold them). Zero means 15 minutes each, as
	// kops' rolling update allows.
	NodeTimeout, DrainTimeout time.Duration
	// Poll is how often the cluster is read while waiting; zero means 2s.
	Poll time.Duration
	// Replaced is what Run replaced so far, in order.
	Replaced []Replacement
}

// Replacement is one node the upgrade replaced.
type Replacement struct {
	// Node is the Node replaced; for an etcd member, its name and zone.
	Node Node
	Etcd bool
	// Started is when it was cordoned (a worker) or its instance
	// terminated (a control-plane node); Serving when its successor
	// served: an API server ready with the new release, or a Ready worker.
	Started, Serving time.Time
}

// Node is a Kubernetes Node as the upgrade sees it.
type Node struct {
	Name, UID, Zone string
	ControlPlane    bool
	Ready           bool
	Unschedulable   bool
	Kubelet         string
	// ProviderID is the cloud's ID of its instance (aws:///<zone>/<id>).
	ProviderID string
}

// State is the cluster as the upgrade reads it.
type State struct {
	Nodes []Node
	// APIServers are the kube-apiserver versions by node name, of the
	// pods that are ready.
	APIServers map[string]string
	// ClusterConfig is kubeadm-config's kubernetesVersion.
	ClusterConfig string
	// KubeProxy is the kube-proxy DaemonSet's image version, "none" if
	// there is no such DaemonSet.
	KubeProxy string
	// Recorded is the version record's value.
	Recorded string
	// Etcd are the etcd members' groups.
	Etcd []EtcdGroup
}

// Read reads the cluster's state.
func (u *Upgrade) Read(ctx context.Context) (State, error) {
	s := State{APIServers: map[string]string{}}
	var nodes struct {
		Items []struct {
			Metadata struct {
				Name, UID string
				Labels    map[string]string
			}
			Spec struct {
				Unschedulable bool
				ProviderID    string
			}
			Status struct {
				Conditions []struct{ Type, Status string }
				NodeInfo   struct{ KubeletVersion string }
			}
		}
	}
	if err := u.get("/api/v1/nodes", &nodes); err != nil {
		return s, err
	}
	for _, n := range nodes.Items {
		node := Node{Name: n.Metadata.Name, UID: n.Metadata.UID, Zone: n.Metadata.Labels[bootstrap.ZoneLabel],
			Unschedulable: n.Spec.Unschedulable, Kubelet: n.Status.NodeInfo.KubeletVersion, ProviderID: n.Spec.ProviderID}
		_, node.ControlPlane = n.Metadata.Labels[bootstrap.ControlPlaneLabel]
		for _, c := range n.Status.Conditions {
			node.Ready = node.Ready || c.Type == "Ready" && c.Status == "True"
		}
		s.Nodes = append(s.Nodes, node)
	}
	slices.SortFunc(s.Nodes, func(a, b Node) int { return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.Name, b.Name)) })
	var pods podList
	if err := u.get("/api/v1/namespaces/kube-system/pods?labelSelector="+url.QueryEscape("component=kube-apiserver"), &pods); err != nil {
		return s, err
	}
	for _, p := range pods.Items {
		if p.ready() && len(p.Spec.Containers) > 0 {
			s.APIServers[p.Spec.NodeName] = imageVersion(p.Spec.Containers[0].Image)
		}
	}
	var config struct{ Data map[string]string }
	if err := u.get(kubeadmConfigPath, &config); err != nil {
		return s, err
	}
	if m := clusterVersionLine.FindStringSubmatch(config.Data["ClusterConfiguration"]); m != nil {
		s.ClusterConfig = m[1]
	}
	// A cluster whose CNI replaces kube-proxy has none.
	var proxy daemonSet
	if err := u.get(kubeProxyPath, &proxy); errors.Is(err, errNotFound) {
		s.KubeProxy = "none"
	} else if err != nil {
		return s, err
	}
	if len(proxy.Spec.Template.Spec.Containers) > 0 {
		s.KubeProxy = imageVersion(proxy.Spec.Template.Spec.Containers[0].Image)
	}
	var err error
	if s.Recorded, err = u.Record.Read(ctx); err != nil {
		return s, err
	}
	s.Etcd, err = u.Fleet.EtcdGroups(ctx)
	return s, err
}

const (
	kubeadmConfigPath = "/api/v1/namespaces/kube-system/configmaps/kubeadm-config"
	kubeProxyPath     = "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy"
)

var clusterVersionLine = regexp.MustCompile(`(?m)^kubernetesVersion: *(\S+)$`)

// imageVersion is an image reference's tag: registry.k8s.io/kube-proxy:v1.36.3
// is v1.36.3.
func imageVersion(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}

// Check refuses an upgrade the version-skew policy does not allow: the
// target below any API server or kubelet, or more than one minor above any
// API server.
func (s State) Check(target string) error {
	to, ok := bootstrap.ParseVersion(target)
	if !ok {
		return fmt.Errorf("kubernetesVersion %q: want vMAJOR.MINOR.PATCH", target)
	}
	var problems []string
	check := func(what, version string) {
		v, ok := bootstrap.ParseVersion(version)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s runs %q, which is not a release", what, version))
		case to.Less(v):
			problems = append(problems, fmt.Sprintf("%s runs %s, newer than %s: kubeha never downgrades (restore an etcd snapshot taken before the upgrade)", what, version, target))
		case to.MinorsAbove(v) > 1:
			problems = append(problems, fmt.Sprintf("%s runs %s: Kubernetes upgrades one minor at a time, to %d.%d first", what, version, v.Major, v.Minor+1))
		}
	}
	if len(s.APIServers) == 0 {
		problems = append(problems, "no API server is ready")
	}
	for _, name := range slices.Sorted(maps.Keys(s.APIServers)) {
		check("the API server on "+name, s.APIServers[name])
	}
	for _, n := range s.Nodes {
		if v, ok := bootstrap.ParseVersion(n.Kubelet); ok && to.Less(v) {
			problems = append(problems, fmt.Sprintf("the kubelet on %s runs %s, newer than %s", n.Name, n.Kubelet, target))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("upgrade to %s refused before anything changed:\n  %s", target, strings.Join(problems, "\n  "))
	}
	return nil
}

// Steps says what Run would do from this state, in order.
func (s State) Steps(target string) []string {
	var steps []string
	for _, g := range s.Etcd {
		if i := g.stale(); i != nil {
			steps = append(steps, fmt.Sprintf("replace etcd member %s's instance %s (zone %s) from its group's new launch template once every member is in service; its instance leaves once the other members are healthy voters, its successor is in service once it is one", g.Member, i.ID, i.Zone))
		}
	}
	if s.ClusterConfig != target {
		steps = append(steps, fmt.Sprintf("move kubeadm-config's kubernetesVersion from %s to %s", s.ClusterConfig, target))
	}
	for _, n := range s.Nodes {
		if n.ControlPlane && s.APIServers[n.Name] != target {
			steps = append(steps, fmt.Sprintf("replace control-plane node %s (zone %s, API server %s), then wait until its successor's API server serves %s and is ready, and its instance is a healthy target of the load balancer", n.Name, n.Zone, cmp.Or(s.APIServers[n.Name], "not ready"), target))
		}
	}
	if s.Recorded != target {
		steps = append(steps, fmt.Sprintf("move the version record from %s to %s: control-plane kubelets follow in place one at a time, and the workers wait for them; new nodes boot kubelet %s", s.Recorded, target, target))
	}
	for _, n := range s.Nodes {
		if !n.ControlPlane && n.Kubelet != target {
			steps = append(steps, fmt.Sprintf("cordon and drain worker %s (zone %s, kubelet %s) within its pods' disruption budgets, replace it, and wait for a Ready successor", n.Name, n.Zone, n.Kubelet))
		}
	}
	if s.KubeProxy != target && s.KubeProxy != "none" {
		steps = append(steps, fmt.Sprintf("move kube-proxy from %s to %s", s.KubeProxy, target))
	}
	return steps
}

// Run upgrades the cluster, each step only once the one before holds.
func (u *Upgrade) Run(ctx context.Context) error {
	s, err := u.Read(ctx)
	if err != nil {
		return err
	}
	if err := s.Check(u.Target); err != nil {
		return err
	}
	for _, step := range s.Steps(u.Target) {
		u.logf("to do: %s", step)
	}
	// etcd first, as kubeadm upgrades its local etcd before the API
	// servers that use it.
	for _, g := range s.Etcd {
		if i := g.stale(); i != nil {
			if err := u.replaceEtcdMember(ctx, g, *i); err != nil {
				return err
			}
		}
	}
	if s.ClusterConfig != u.Target {
		if err := u.moveClusterConfig(); err != nil {
			return err
		}
	}
	for _, n := range s.Nodes {
		if n.ControlPlane && s.APIServers[n.Name] != u.Target {
			if err := u.replaceControlPlaneNode(ctx, n); err != nil {
				return err
			}
		}
	}
	if s, err = u.Read(ctx); err != nil {
		return err
	}
	for _, n := range s.Nodes {
		if n.ControlPlane && s.APIServers[n.Name] != u.Target {
			return fmt.Errorf("the API server on %s runs %q, not %s: the record stays at %s", n.Name, s.APIServers[n.Name], u.Target, s.Recorded)
		}
	}
	if s.Recorded != u.Target {
		if err := u.Record.Write(ctx, u.Target); err != nil {
			return fmt.Errorf("moving the version record to %s: %w", u.Target, err)
		}
		u.logf("every API server runs %s: the version record says so", u.Target)
	}
	// Control-plane kubelets follow the record on their own, one node at
	// a time, each restarting its API server. As in kubeadm's runbook
	// they finish before the first worker is drained: a worker's
	// replacement moves pods and boots a node, and the API, down one
	// server at each restart, would carry both at once.
	var controlPlane int
	for _, n := range s.Nodes {
		if n.ControlPlane {
			controlPlane++
		}
	}
	if err := u.waitFor(ctx, "every control-plane kubelet at "+u.Target, time.Duration(controlPlane)*u.nodeTimeout(), func() error {
		return u.kubeletsAt(ctx, func(n Node) bool { return n.ControlPlane })
	}); err != nil {
		return err
	}
	for _, n := range s.Nodes {
		if !n.ControlPlane && n.Kubelet != u.Target {
			if err := u.replaceWorker(ctx, n); err != nil {
				return err
			}
		}
	}
	if err := u.waitFor(ctx, "every kubelet at "+u.Target, u.nodeTimeout(), func() error {
		return u.kubeletsAt(ctx, func(Node) bool { return true })
	}); err != nil {
		return err
	}
	if s.KubeProxy == "none" {
		return nil
	}
	return u.moveKubeProxy(ctx)
}

// kubeletsAt fails unless the kubelet of every node that counts runs
// the target.
func (u *Upgrade) kubeletsAt(ctx context.Context, counts func(Node) bool) error {
	s, err := u.Read(ctx)
	if err != nil {
		return err
	}
	for _, n := range s.Nodes {
		if counts(n) && n.Kubelet != u.Target {
			return fmt.Errorf("the kubelet on %s runs %s", n.Name, n.Kubelet)
		}
	}
	return nil
}

// replaceEtcdMember replaces member g's instance i once every member is
// in service and the API ready, then waits until its group has a new
// instance of its current launch template in service: its launch hook
// holds it until the member is a healthy voter. The member's leave hook
// (bootstrap.EtcdLeaveHook) holds i until the other members are.
func (u *Upgrade) replaceEtcdMember(ctx context.Context, g EtcdGroup, i GroupInstance) error {
	groups := func() ([]EtcdGroup, error) { return u.Fleet.EtcdGroups(ctx) }
	if err := u.waitFor(ctx, "every etcd member in service and the API ready", u.nodeTimeout(), func() error {
		all, err := groups()
		if err != nil {
			return err
		}
		for _, g := range all {
			if err := g.steady(); err != nil {
				return err
			}
		}
		return u.ready()
	}); err != nil {
		return err
	}
	r := Replacement{Node: Node{Name: g.Member, Zone: i.Zone}, Etcd: true, Started: time.Now()}
	u.logf("replacing etcd member %s (%s in %s)", g.Member, i.ID, i.Zone)
	if err := u.Fleet.ReplaceEtcdInstance(ctx, i.ID); err != nil {
		return fmt.Errorf("replacing etcd member %s: %w", g.Member, err)
	}
	err := u.waitFor(ctx, "a successor of etcd member "+g.Member+" in service", u.nodeTimeout(), func() error {
		all, err := groups()
		if err != nil {
			return err
		}
		for _, h := range all {
			if h.Name != g.Name {
				continue
			}
			for _, n := range h.Instances {
				if n.ID != i.ID && n.Current && n.State == "InService" {
					return nil
				}
			}
			return h.steady()
		}
		return fmt.Errorf("etcd member %s's group %s is gone", g.Member, g.Name)
	})
	if err != nil {
		return err
	}
	r.Serving = time.Now()
	u.Replaced = append(u.Replaced, r)
	u.logf("etcd member %s's successor is a voter in service, %.0fs after its replacement began", g.Member, r.Serving.Sub(r.Started).Seconds())
	return nil
}

// moveClusterConfig sets kubeadm-config's kubernetesVersion, as kubeadm
// upgrade apply and Cluster API do before the first new node joins.
func (u *Upgrade) moveClusterConfig() error {
	var config struct{ Data map[string]string }
	if err := u.get(kubeadmConfigPath, &config); err != nil {
		return err
	}
	cc := config.Data["ClusterConfiguration"]
	if !clusterVersionLine.MatchString(cc) {
		return fmt.Errorf("kubeadm-config's ClusterConfiguration has no kubernetesVersion line")
	}
	cc = clusterVersionLine.ReplaceAllString(cc, "kubernetesVersion: "+u.Target)
	if err := u.patch(kubeadmConfigPath, map[string]any{"data": map[string]string{"ClusterConfiguration": cc}}); err != nil {
		return err
	}
	u.logf("kubeadm-config's kubernetesVersion is %s: control-plane nodes join with its static pods", u.Target)
	return nil
}

// replaceControlPlaneNode replaces n and waits until an API server in its
// zone serves the target and is ready, and its node is a healthy target
// of the load balancer: until then, the next node's replacement would
// leave the API one server short.
func (u *Upgrade) replaceControlPlaneNode(ctx context.Context, n Node) error {
	return u.replace(ctx, Replacement{Node: n, Started: time.Now()}, "serves "+u.Target+", is ready and in the load balancer", func(s State, m Node) error {
		if v := s.APIServers[m.Name]; v != u.Target {
			return fmt.Errorf("its API server serves %q", v)
		}
		if err := u.ready(); err != nil {
			return err
		}
		return u.Fleet.InLoadBalancer(ctx, m)
	})
}

// ready is the API's /readyz through the load balancer.
func (u *Upgrade) ready() error {
	code, body, err := u.API.Do(http.MethodGet, bootstrap.HealthCheckPath, nil)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d %.200s (%v)", bootstrap.HealthCheckPath, code, body, err)
	}
	return nil
}

// replaceWorker cordons and drains n, replaces it, and waits for a Ready,
// schedulable worker of the target in its zone.
func (u *Upgrade) replaceWorker(ctx context.Context, n Node) error {
	r := Replacement{Node: n, Started: time.Now()}
	if err := u.patch("/api/v1/nodes/"+n.Name, map[string]any{"spec": map[string]any{"unschedulable": true}}); err != nil {
		return fmt.Errorf("cordoning %s: %w", n.Name, err)
	}
	if err := u.drain(ctx, n); err != nil {
		return err
	}
	// As kops' rolling update does: the drained Node goes before its
	// instance, so nothing is scheduled to it meanwhile, and its name is
	// free for a successor that is given the same one.
	if code, body, err := u.API.Do(http.MethodDelete, "/api/v1/nodes/"+n.Name, nil); err != nil || (code != http.StatusOK && code != http.StatusNotFound) {
		return fmt.Errorf("deleting the drained Node %s: HTTP %d %.300s (%v)", n.Name, code, body, err)
	}
	return u.replace(ctx, r, "is Ready with kubelet "+u.Target, func(_ State, m Node) error {
		if m.Unschedulable || m.Kubelet != u.Target {
			return fmt.Errorf("kubelet %s, unschedulable: %t", m.Kubelet, m.Unschedulable)
		}
		return nil
	})
}

// replace has r's node replaced by its group and waits until a Ready node
// of the same role in its zone is a successor (done says how; successor
// says why one is not), then records the replacement.
func (u *Upgrade) replace(ctx context.Context, r Replacement, done string, successor func(State, Node) error) error {
	n := r.Node
	u.logf("replacing %s in %s", n.Name, n.Zone)
	if err := u.Fleet.Replace(ctx, n); err != nil {
		return fmt.Errorf("replacing %s: %w", n.Name, err)
	}
	err := u.waitFor(ctx, fmt.Sprintf("a successor of %s that %s", n.Name, done), u.nodeTimeout(), func() error {
		s, err := u.Read(ctx)
		if err != nil {
			return err
		}
		why := fmt.Errorf("no Ready node yet in %s", n.Zone)
		for _, m := range s.Nodes {
			if m.Zone != n.Zone || m.ControlPlane != n.ControlPlane || !m.Ready {
				continue
			}
			err := successor(s, m)
			if err == nil {
				return nil
			}
			why = fmt.Errorf("%s: %w", m.Name, err)
		}
		return why
	})
	if err != nil {
		return err
	}
	r.Serving = time.Now()
	u.Replaced = append(u.Replaced, r)
	u.logf("%s's successor %s, %.0fs after its replacement began", n.Name, done, r.Serving.Sub(r.Started).Seconds())
	return nil
}

// drain evicts every pod on n but DaemonSets' and static ones, as kubectl
// drain does: the eviction API refuses (429) while a PodDisruptionBudget
// allows no disruption, and each refusal is retried until DrainTimeout.
func (u *Upgrade) drain(ctx context.Context, n Node) error {
	deadline := time.Now().Add(cmp.Or(u.DrainTimeout, 15*time.Minute))
	for {
		var pods podList
		if err := u.get("/api/v1/pods?fieldSelector="+url.QueryEscape("spec.nodeName="+n.Name), &pods); err != nil {
			return err
		}
		var left []string
		for _, p := range pods.Items {
			if p.daemonOrStatic() || p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" {
				continue
			}
			name := p.Metadata.Namespace + "/" + p.Metadata.Name
			left = append(left, name)
			eviction := map[string]any{"apiVersion": "policy/v1", "kind": "Eviction",
				"metadata": map[string]string{"name": p.Metadata.Name, "namespace": p.Metadata.Namespace}}
			code, body, err := u.API.Do(http.MethodPost, "/api/v1/namespaces/"+p.Metadata.Namespace+"/pods/"+p.Metadata.Name+"/eviction", eviction)
			switch {
			case err != nil:
				u.logf("evicting %s: %v", name, err)
			case code == http.StatusTooManyRequests:
				u.logf("evicting %s waits for its disruption budget", name)
			case code >= 300 && code != http.StatusNotFound:
				return fmt.Errorf("evicting %s: HTTP %d %.300s", name, code, body)
			}
		}
		if len(left) == 0 {
			u.logf("%s is drained", n.Name)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("draining %s: %s still there after %s", n.Name, strings.Join(left, ", "), cmp.Or(u.DrainTimeout, 15*time.Minute))
		}
		if err := sleep(ctx, cmp.Or(u.Poll, 5*time.Second)); err != nil {
			return err
		}
	}
}

// moveKubeProxy sets kube-proxy's image to the target's and waits until
// every node runs it, as kubeadm does once every API server is upgraded.
// The DaemonSet is read and written back whole (an update, not a merge
// patch, which would replace the container list).
func (u *Upgrade) moveKubeProxy(ctx context.Context) error {
	var whole map[string]any
	if err := u.get(kubeProxyPath, &whole); err != nil {
		return err
	}
	spec, _ := whole["spec"].(map[string]any)
	template, _ := spec["template"].(map[string]any)
	podSpec, _ := template["spec"].(map[string]any)
	containers, _ := podSpec["containers"].([]any)
	if len(containers) == 0 {
		return fmt.Errorf("kube-proxy's DaemonSet has no container")
	}
	container, _ := containers[0].(map[string]any)
	image, _ := container["image"].(string)
	if imageVersion(image) != u.Target {
		image = strings.TrimSuffix(image, imageVersion(image)) + u.Target
		container["image"] = image
		code, body, err := u.API.Do(http.MethodPut, kubeProxyPath, whole)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("PUT %s: HTTP %d %.300s (%v)", kubeProxyPath, code, body, err)
		}
		u.logf("kube-proxy's DaemonSet runs %s", image)
	}
	return u.waitFor(ctx, "kube-proxy "+u.Target+" on every node", u.nodeTimeout(), func() error {
		var ds daemonSet
		if err := u.get(kubeProxyPath, &ds); err != nil {
			return err
		}
		st := ds.Status
		if ds.Metadata.Generation > st.ObservedGeneration || st.UpdatedNumberScheduled != st.DesiredNumberScheduled || st.NumberAvailable != st.DesiredNumberScheduled {
			return fmt.Errorf("%d of %d updated, %d available", st.UpdatedNumberScheduled, st.DesiredNumberScheduled, st.NumberAvailable)
		}
		return nil
	})
}

type podList struct {
	Items []pod
}

type pod struct {
	Metadata struct {
		Name, Namespace string
		Annotations     map[string]string
		OwnerReferences []struct{ Kind string }
	}
	Spec struct {
		NodeName   string
		Containers []struct{ Name, Image string }
	}
	Status struct {
		Phase      string
		Conditions []struct{ Type, Status string }
	}
}

func (p pod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// daemonOrStatic is a pod drain leaves: its DaemonSet would put it back,
// or the kubelet runs it from a file (a mirror pod).
func (p pod) daemonOrStatic() bool {
	if _, ok := p.Metadata.Annotations["kubernetes.io/config.mirror"]; ok {
		return true
	}
	for _, o := range p.Metadata.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}

type daemonSet struct {
	Metadata struct{ Generation int64 }
	Spec     struct {
		Template struct {
			Spec struct {
				Containers []struct{ Name, Image string }
			}
		}
	}
	Status struct {
		ObservedGeneration                                              int64
		DesiredNumberScheduled, UpdatedNumberScheduled, NumberAvailable int
	}
}

// errNotFound is a GET answered 404.
var errNotFound = errors.New("not found")

func (u *Upgrade) get(path string, into any) error {
	code, body, err := u.API.Do(http.MethodGet, path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if code == http.StatusNotFound {
		return fmt.Errorf("GET %s: %w", path, errNotFound)
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d %.300s", path, code, body)
	}
	return json.Unmarshal([]byte(body), into)
}

func (u *Upgrade) patch(path string, patch any) error {
	code, body, err := u.API.Patch(path, patch)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("PATCH %s: HTTP %d %.300s (%v)", path, code, body, err)
	}
	return nil
}

func (u *Upgrade) nodeTimeout() time.Duration { return cmp.Or(u.NodeTimeout, 15*time.Minute) }

func (u *Upgrade) logf(format string, args ...any) {
	if u.Logf != nil {
		u.Logf(format, args...)
	}
}

// waitFor polls ok until it passes or limit is up.
func (u *Upgrade) waitFor(ctx context.Context, what string, limit time.Duration, ok func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := ok()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting %s for %s: %w", limit, what, err)
		}
		if err := sleep(ctx, cmp.Or(u.Poll, 2*time.Second)); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
