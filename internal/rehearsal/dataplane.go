package rehearsal

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
	"github.com/kubeha/kubeha/internal/workload"
)

// The data plane: a worker in every zone, the stack's CNI and CoreDNS as
// kubeha installs them, and a probe workload (hack/tools/probe): a
// Deployment behind a Service, and a client pod in each zone calling it by
// name every 100 ms.
const (
	registryIP    = "10.210.200.3"
	probeApp      = "probe"
	probeReplicas = 3
	probePort     = 8080
	// probeURL is fully qualified: with the pods' ndots:5 a shorter name
	// costs a lookup in each search domain first, on every call.
	probeURL = "http://probe.default.svc.cluster.local.:8080/"
	// coreDNSSelector selects CoreDNS's pods, as its chart labels them.
	coreDNSSelector = "k8s-app=kube-dns"
	// uninitializedTaint is what a kubelet with --cloud-provider=external
	// registers with, until the cloud controller manager initialises it.
	uninitializedTaint = "node.cloudprovider.kubernetes.io/uninitialized"
)

// DataPlane is what the data plane's set-up measured.
type DataPlane struct {
	// CNI is the CNI plugin the rehearsal runs (the stack's choice
	// overridden: Cilium's images cannot be built here).
	CNI string `json:"cni"`
	// ReadySeconds is from the workers' launch to every node Ready.
	ReadySeconds float64 `json:"nodesReadySeconds"`
	// CoreDNSPerZone and ProbePerZone count ready pods by zone before the
	// drills; the probe Deployment sets no spread of its own.
	CoreDNSPerZone map[string]int `json:"coreDNSPerZone"`
	ProbePerZone   map[string]int `json:"probePerZone"`
	// Clients are the client pods, one per zone.
	Clients []string `json:"clients"`
}

// startRegistry serves the add-on images (lab.BuildAddonImages) as the
// registries the charts name, over TLS from the VPC's CA, under their own
// names in the VPC's DNS: containerd pulls them as it would on AWS.
func (c *cluster) startRegistry(images map[string]string) error {
	registry, err := lab.NewRegistry(images)
	if err != nil {
		return err
	}
	pair, err := c.cloud.CA.Sign(pki.Spec{CommonName: "kubeha rehearsal registry", DNSNames: registry.Hosts(),
		Usages: []pki.Usage{pki.ServerAuth}, ValidityHours: pki.LeafValidityHours})
	if err != nil {
		return err
	}
	host, err := c.net.AddHostOn("awsnet", "registry", registryIP, nil, nil)
	if err != nil {
		return err
	}
	listener, err := host.Listen("tcp", registryIP+":443")
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(listener, "", "") }()
	c.registry = srv
	for _, name := range registry.Hosts() {
		c.cloud.DNS.AddHost(name, net.ParseIP(registryIP))
	}
	return nil
}

// workerNamed is the worker group of that name, or nil.
func (c *cluster) workerNamed(name string) *lab.NodeGroup { return groupNamed(c.workers, name) }

// zoneOfNode is the zone of the node named, or "".
func (c *cluster) zoneOfNode(name string) string {
	for _, g := range slices.Concat(c.nodes, c.workers) {
		if g.Name == name {
			return g.Zone
		}
	}
	return ""
}

// nodeList is the API's list of Nodes, the fields read here.
type nodeList struct {
	Items []struct {
		Metadata objectMeta `json:"metadata"`
		Spec     struct {
			ProviderID string           `json:"providerID"`
			Taints     []map[string]any `json:"taints"`
		} `json:"spec"`
		Status struct {
			Conditions []condition `json:"conditions"`
			NodeInfo   struct {
				KubeletVersion string `json:"kubeletVersion"`
			} `json:"nodeInfo"`
		} `json:"status"`
	} `json:"items"`
}

// objectMeta is an object's metadata, the fields read here.
type objectMeta struct {
	Name              string            `json:"name"`
	Labels            map[string]string `json:"labels"`
	ResourceVersion   string            `json:"resourceVersion"`
	CreationTimestamp time.Time         `json:"creationTimestamp"`
	DeletionTimestamp *time.Time        `json:"deletionTimestamp"`
}

// pod is a Pod, the fields read here.
type pod struct {
	Metadata objectMeta                `json:"metadata"`
	Spec     struct{ NodeName string } `json:"spec"`
	Status   struct {
		Phase             string      `json:"phase"`
		Conditions        []condition `json:"conditions"`
		ContainerStatuses []struct {
			Name  string
			State map[string]struct{ Reason, Message string }
		} `json:"containerStatuses"`
	} `json:"status"`
}

// String says where the pod is and, if it is not ready, why.
func (p pod) String() string {
	var why []string
	for _, c := range p.Status.Conditions {
		if c.Status != "True" {
			why = append(why, fmt.Sprintf("%s=%s %s %s", c.Type, c.Status, c.Reason, c.Message))
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		for state, detail := range cs.State {
			if state != "running" {
				why = append(why, fmt.Sprintf("container %s %s %s %s", cs.Name, state, detail.Reason, detail.Message))
			}
		}
	}
	deleting := ""
	if p.Metadata.DeletionTimestamp != nil {
		deleting = ", being deleted"
	}
	return fmt.Sprintf("%s on %q, %s%s %v", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, deleting, why)
}

// condition is a Node's or Pod's status condition.
type condition struct {
	Type, Status, Reason, Message string
	LastTransitionTime            time.Time `json:"lastTransitionTime"`
}

// ready is the Ready condition among conditions, if there is one.
func ready(conditions []condition) (condition, bool) {
	i := slices.IndexFunc(conditions, func(c condition) bool { return c.Type == "Ready" })
	if i < 0 {
		return condition{}, false
	}
	return conditions[i], true
}

func (c *cluster) listNodes() (nodeList, error) {
	var nodes nodeList
	code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/nodes", nil)
	if err != nil || code != http.StatusOK {
		return nodes, fmt.Errorf("listing nodes: HTTP %d %.200s (%v)", code, body, err)
	}
	return nodes, json.Unmarshal([]byte(body), &nodes)
}

// nodeInitInterval is how often initializeNodes lists the Nodes: a
// listing of every Node is no cheap request on a machine of 2 CPUs.
const nodeInitInterval = 2 * time.Second

// initializeNodes does, every nodeInitInterval until stop, what the AWS
// cloud controller manager does to Nodes (its chart is a stand-in here).
// A new Node gets the zone and region labels from the instance, its
// providerID, and the uninitialised taint taken off, which nothing but
// the CNI tolerates. The patch holds the Node's resourceVersion, as the
// cloud controller manager's does: the taints list is replaced whole, and
// kubeadm adds the control-plane taint meanwhile. A Node whose kubelet
// went silent and whose instance is gone is deleted, and its pods with
// it.
func (c *cluster) initializeNodes(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(nodeInitInterval):
		}
		nodes, err := c.listNodes()
		if err != nil {
			continue
		}
		for _, n := range nodes.Items {
			i := slices.IndexFunc(n.Spec.Taints, func(t map[string]any) bool { return t["key"] == uninitializedTaint })
			g := c.nodeGroupNamed(n.Metadata.Name)
			if g == nil {
				continue
			}
			if r, _ := ready(n.Status.Conditions); r.Status == "Unknown" && n.Spec.ProviderID != "" &&
				(g.Instance == nil || !strings.HasSuffix(n.Spec.ProviderID, "/"+g.Instance.ID)) {
				c.deleteNode(n.Metadata.Name, n.Metadata.ResourceVersion)
				continue
			}
			if i < 0 || g.Instance == nil {
				continue
			}
			patch := map[string]any{
				"metadata": map[string]any{"resourceVersion": n.Metadata.ResourceVersion,
					"labels": map[string]string{bootstrap.ZoneLabel: g.Zone, "topology.kubernetes.io/region": c.stack.region}},
				"spec": map[string]any{"providerID": "aws:///" + g.Zone + "/" + g.Instance.ID, "taints": slices.Delete(slices.Clone(n.Spec.Taints), i, i+1)},
			}
			if n.Spec.ProviderID != "" {
				// It can be set once only.
				delete(patch["spec"].(map[string]any), "providerID")
			}
			// 409 Conflict: the Node changed since listed; the next round retries.
			if code, body, err := c.lbAdmin.Patch("/api/v1/nodes/"+n.Metadata.Name, patch); err != nil || (code != http.StatusOK && code != http.StatusConflict) {
				c.logf("initialising node %s: HTTP %d %.200s (%v)", n.Metadata.Name, code, body, err)
			}
		}
	}
}

// deleteNode deletes a Node whose instance is gone, if it did not change
// since it was listed, and notes when.
func (c *cluster) deleteNode(name, resourceVersion string) {
	options := map[string]any{"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": map[string]any{"resourceVersion": resourceVersion}}
	code, body, err := c.lbAdmin.Do(http.MethodDelete, "/api/v1/nodes/"+name, options)
	if err == nil && code == http.StatusConflict {
		return // it changed since listed: the next round looks again
	}
	if err != nil || code != http.StatusOK {
		c.logf("deleting node %s, whose instance is gone: HTTP %d %.200s (%v)", name, code, body, err)
		return
	}
	c.nodesDeleted.Store(name, time.Now())
	c.logf("node %s deleted: its kubelet is silent and its instance gone", name)
}

// nodeGroupNamed is the control-plane or worker group of that name.
func (c *cluster) nodeGroupNamed(name string) *lab.NodeGroup {
	if g := c.nodeNamed(name); g != nil {
		return g
	}
	return c.workerNamed(name)
}

// startDataPlane waits until every node is Ready on the CNI and CoreDNS
// serves from every zone, then starts the probe workload and its clients,
// and checks that the scheduler's defaults alone spread it over zones.
func (c *cluster) startDataPlane(cni string, workersLaunched time.Time) (DataPlane, error) {
	d := DataPlane{CNI: cni}
	want := len(c.nodes) + len(c.workers)
	if _, err := c.waitFor(fmt.Sprintf("all %d nodes Ready on %s", want, cni), 10*time.Minute, func() error {
		nodes, err := c.listNodes()
		if err != nil {
			return err
		}
		var notReady []string
		for _, n := range nodes.Items {
			if r, _ := ready(n.Status.Conditions); r.Status != "True" || n.Metadata.Labels[bootstrap.ZoneLabel] == "" {
				notReady = append(notReady, n.Metadata.Name)
			}
		}
		if len(nodes.Items) != want || len(notReady) > 0 {
			return fmt.Errorf("%d nodes, not Ready or not initialised: %v", len(nodes.Items), notReady)
		}
		return nil
	}); err != nil {
		return d, fmt.Errorf("%w\n%s", err, c.workers[0].BootstrapLog())
	}
	d.ReadySeconds = time.Since(workersLaunched).Seconds()
	var err error
	if d.CoreDNSPerZone, err = c.waitSpread("CoreDNS", "kube-system", coreDNSSelector, 3, 5*time.Minute); err != nil {
		return d, err
	}
	for _, obj := range c.workloadObjects() {
		if err := c.change(http.MethodPost, obj.path, obj.body, http.StatusCreated, http.StatusConflict); err != nil {
			return d, err
		}
	}
	if d.ProbePerZone, err = c.waitSpread("the probe Deployment", "default", "app="+probeApp, probeReplicas, 5*time.Minute); err != nil {
		return d, err
	}
	d.Clients, err = c.clientsAnswered()
	return d, err
}

// clientsAnswered waits until the probe's client in every zone has had an
// answer, and names them.
func (c *cluster) clientsAnswered() ([]string, error) {
	var clients []string
	for i := range c.workers {
		clients = append(clients, clientName(c.stack.zones[i]))
	}
	_, err := c.waitFor("a client answered in every zone", 3*time.Minute, func() error {
		answers, err := c.clientAnswers(c.stack.zones)
		for _, name := range clients {
			if !slices.ContainsFunc(answers[name], func(a workload.Answer) bool { return a.OK }) {
				return fmt.Errorf("no answer yet for %s (%v)", name, err)
			}
		}
		return nil
	})
	return clients, err
}

// restartClients creates again the probe's clients that a drain took
// (bare pods, which nothing puts back), and waits until each answered.
func (c *cluster) restartClients() error {
	for _, obj := range c.workloadObjects() {
		if !strings.HasSuffix(obj.path, "/pods") {
			continue
		}
		// A client drained with its node may still be terminating, and go
		// once the Node has: create it only once no such pod is left.
		name := obj.body["metadata"].(map[string]any)["name"].(string)
		if _, err := c.waitFor(name+" created anew or running", 2*time.Minute, func() error {
			code, body, err := c.lbAdmin.Do(http.MethodPost, obj.path, obj.body)
			switch {
			case err != nil || code != http.StatusCreated && code != http.StatusConflict:
				return fmt.Errorf("creating %s: HTTP %d %.300s (%v)", obj.path, code, body, err)
			case code == http.StatusConflict:
				var existing struct {
					Metadata struct{ DeletionTimestamp string }
				}
				code, body, err = c.lbAdmin.Do(http.MethodGet, obj.path+"/"+name, nil)
				if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &existing) != nil || existing.Metadata.DeletionTimestamp != "" {
					return fmt.Errorf("%s exists and is going (HTTP %d, %v)", name, code, err)
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	_, err := c.clientsAnswered()
	return err
}

// waitSpread waits until the pods selected are ready, n of them, one in
// each zone, and returns how many each zone runs.
func (c *cluster) waitSpread(what, namespace, selector string, n int, limit time.Duration) (map[string]int, error) {
	var perZone map[string]int
	_, err := c.waitFor(fmt.Sprintf("%s: %d ready pods, one per zone", what, n), limit, func() error {
		var err error
		if perZone, err = c.readyPodsPerZone(namespace, selector); err != nil {
			return err
		}
		for _, zone := range c.stack.zones {
			if perZone[zone] != n/len(c.stack.zones) {
				return fmt.Errorf("ready pods by zone: %v", perZone)
			}
		}
		return nil
	})
	if err != nil {
		pods, _ := c.listPods(namespace, selector)
		for _, p := range pods {
			err = fmt.Errorf("%w\n  %s", err, p)
		}
	}
	return perZone, err
}

// listPods lists the pods selected.
func (c *cluster) listPods(namespace, selector string) ([]pod, error) {
	code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/namespaces/"+namespace+"/pods?labelSelector="+url.QueryEscape(selector), nil)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("listing pods %s: HTTP %d %.200s (%v)", selector, code, body, err)
	}
	var pods struct {
		Items []pod `json:"items"`
	}
	return pods.Items, json.Unmarshal([]byte(body), &pods)
}

// dataPlaneSettled waits until the data plane is whole.
func (c *cluster) dataPlaneSettled() error {
	took, err := c.waitFor("every Node Ready and the probe's pods ready", recoveryLimit, c.dataPlaneWhole)
	if took > time.Second {
		c.logf("every Node and the probe's pods were ready again only after %.1fs more", took.Seconds())
	}
	return err
}

// dataPlaneWhole: every Node Ready and every probe pod ready.
func (c *cluster) dataPlaneWhole() error {
	nodes, err := c.listNodes()
	if err != nil {
		return err
	}
	for _, n := range nodes.Items {
		if r, _ := ready(n.Status.Conditions); r.Status != "True" {
			return fmt.Errorf("node %s Ready=%q", n.Metadata.Name, r.Status)
		}
	}
	counts, err := c.readyPodsPerZone("default", "app="+probeApp)
	if n := sum(maps.Values(counts)); err != nil || n != probeReplicas {
		return fmt.Errorf("the probe's ready pods by zone %s (%v)", perZone(counts), err)
	}
	return nil
}

// probePodsPerZone counts the probe's ready pods by zone, asking again:
// the rehearsal's own count around a drill.
func (c *cluster) probePodsPerZone() (map[string]int, error) {
	return askAgain(c, "the probe's pods listed", func() (map[string]int, error) {
		return c.readyPodsPerZone("default", "app="+probeApp)
	})
}

// readyPodsPerZone counts the ready pods selected, by their node's zone.
func (c *cluster) readyPodsPerZone(namespace, selector string) (map[string]int, error) {
	pods, err := c.listPods(namespace, selector)
	if err != nil {
		return nil, err
	}
	return c.readyPerZone(pods), nil
}

// readyPerZone counts the ready pods of pods, by their node's zone.
func (c *cluster) readyPerZone(pods []pod) map[string]int {
	perZone := map[string]int{}
	for _, p := range pods {
		if p.ready() {
			perZone[c.zoneOfNode(p.Spec.NodeName)]++
		}
	}
	return perZone
}

// ready says the pod is ready and not being deleted.
func (p pod) ready() bool {
	r, _ := ready(p.Status.Conditions)
	return p.Metadata.DeletionTimestamp == nil && r.Status == "True"
}

// respread puts a probe pod back in every zone, as the README's runbook
// does once a lost zone returns: Kubernetes moves no running pod there by
// itself. While a zone runs none, it deletes one from the zone that runs
// most; the ReplicaSet's new pod goes where the scheduler's default
// spread puts it, the zone with none. It notes what it did in d.
func (c *cluster) respread(d *Drill) error {
	start := time.Now()
	var before map[string]int
	for round := 1; ; round++ {
		pods, err := askAgain(c, "the probe's pods listed", func() ([]pod, error) { return c.listPods("default", "app="+probeApp) })
		if err != nil {
			return err
		}
		counts := c.readyPerZone(pods)
		if round == 1 {
			before = counts
		}
		fullest := slices.MaxFunc(c.stack.zones, func(a, b string) int { return counts[a] - counts[b] })
		if !slices.ContainsFunc(c.stack.zones, func(z string) bool { return counts[z] == 0 }) {
			if round == 1 {
				return nil
			}
			d.note(fmt.Sprintf("the probe's pods by zone %s; %d deleted from the fullest zone, the new ones spread %s after %.0fs",
				perZone(before), round-1, perZone(counts), time.Since(start).Seconds()))
			return nil
		}
		if round > len(c.stack.zones) {
			return fmt.Errorf("the probe's pods by zone %s after %d deleted from the fullest zone: the scheduler's default spread put none back", perZone(counts), round-1)
		}
		i := slices.IndexFunc(pods, func(p pod) bool { return p.ready() && c.zoneOfNode(p.Spec.NodeName) == fullest })
		if i < 0 {
			return fmt.Errorf("no ready probe pod in %s", fullest)
		}
		if err := c.change(http.MethodDelete, "/api/v1/namespaces/default/pods/"+pods[i].Metadata.Name, nil, http.StatusOK, http.StatusNotFound); err != nil {
			return err
		}
		if _, err := c.waitFor(fmt.Sprintf("the probe's %d pods ready again", probeReplicas), 3*time.Minute, c.dataPlaneWhole); err != nil {
			return err
		}
	}
}

// object is one object to create, and the path it is posted to.
type object struct {
	path string
	body map[string]any
}

func clientName(zone string) string { return "probe-client-" + zone }

// workloadObjects are the probe Deployment, which sets no spread of its
// own (the scheduler's default constraints spread it), its Service, and
// a client pod pinned to each zone.
func (c *cluster) workloadObjects() []object {
	labels := map[string]any{"app": probeApp}
	fromField := func(name, field string) map[string]any {
		return map[string]any{"name": name, "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": field}}}
	}
	server := map[string]any{
		"name": "server", "image": c.stack.probeImage, "args": []string{"serve", fmt.Sprintf(":%d", probePort)},
		"env":            []any{fromField("POD_NAME", "metadata.name"), fromField("NODE_NAME", "spec.nodeName")},
		"ports":          []any{map[string]any{"containerPort": probePort}},
		"readinessProbe": map[string]any{"httpGet": map[string]any{"path": "/", "port": probePort}, "periodSeconds": 1},
	}
	objects := []object{
		{"/apis/apps/v1/namespaces/default/deployments", map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": probeApp, "labels": labels},
			"spec": map[string]any{"replicas": probeReplicas, "selector": map[string]any{"matchLabels": labels},
				"template": map[string]any{"metadata": map[string]any{"labels": labels}, "spec": map[string]any{"containers": []any{server}}}},
		}},
		{"/api/v1/namespaces/default/services", map[string]any{
			"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": probeApp},
			"spec": map[string]any{"selector": labels, "ports": []any{map[string]any{"port": probePort, "targetPort": probePort}}},
		}},
	}
	for _, zone := range c.stack.zones {
		objects = append(objects, object{"/api/v1/namespaces/default/pods", map[string]any{
			"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": clientName(zone), "labels": map[string]any{"app": probeApp + "-client"}},
			"spec": map[string]any{"nodeSelector": map[string]any{bootstrap.ZoneLabel: zone},
				"containers": []any{map[string]any{"name": "client", "image": c.stack.probeImage, "args": []string{"call", probeURL}}}},
		}})
	}
	return objects
}

// clientAnswers are the answers so far of the clients in zones, read
// from each one's container log on its worker (as the kubelet writes it:
// time, stream, tag, line), so that they are kept while the API is away.
// A zone's client is read only while it is measured: a zone cut past the
// eviction toleration loses its client for good.
func (c *cluster) clientAnswers(zones []string) (map[string][]workload.Answer, error) {
	answers := map[string][]workload.Answer{}
	var errs []string
	for _, zone := range zones {
		name := clientName(zone)
		g := c.workers[slices.Index(c.stack.zones, zone)]
		if g.Instance == nil {
			continue
		}
		out, err := g.Instance.Exec("sh", "-c", "cat /var/log/pods/default_"+name+"_*/client/*.log")
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		scanner := bufio.NewScanner(strings.NewReader(out))
		for scanner.Scan() {
			fields := strings.SplitN(scanner.Text(), " ", 4)
			var a workload.Answer
			if len(fields) == 4 && json.Unmarshal([]byte(fields[3]), &a) == nil {
				answers[name] = append(answers[name], a)
			}
		}
	}
	if len(errs) > 0 {
		return answers, fmt.Errorf("reading client logs: %s", strings.Join(errs, "; "))
	}
	return answers, nil
}

// ServiceTraffic is what the clients in the zones a drill leaves alone
// saw of the probe Service during it.
type ServiceTraffic struct {
	Clients  []string `json:"clients"`
	Requests int      `json:"requests"`
	Failures int      `json:"failures"`
	// ErrorWindowSeconds is the longest run of seconds in each of which
	// some call failed: a lost endpoint fails a share of calls every
	// second until it leaves the Service, where a call that times out on
	// a busy machine fails alone.
	ErrorWindowSeconds float64 `json:"serviceErrorWindowSeconds"`
	// PodsBefore and PodsAfter are the probe Deployment's ready pods by
	// zone at the drill's start and once it healed.
	PodsBefore map[string]int `json:"podsPerZoneBefore"`
	PodsAfter  map[string]int `json:"podsPerZoneAfter"`
	// WorkersStayedReady are the workers outside zone a whose Node was
	// Ready throughout: its kubelet reached an API server through the
	// load balancer whatever the drill took.
	WorkersStayedReady []string `json:"workersStayedReady"`
}

// serviceTraffic sums the answers of clients outside zone a (every drill
// that takes a zone takes zone a) started in [from, to).
func (c *cluster) serviceTraffic(from, to time.Time) (ServiceTraffic, error) {
	var s ServiceTraffic
	answers, err := c.clientAnswers(c.stack.zones[1:])
	if err != nil {
		return s, err
	}
	var failing []time.Time
	for _, zone := range c.stack.zones[1:] {
		name := clientName(zone)
		s.Clients = append(s.Clients, name)
		for _, a := range answers[name] {
			if a.Started.Before(from) || !a.Started.Before(to) {
				continue
			}
			s.Requests++
			if !a.OK {
				s.Failures++
				failing = append(failing, a.Started)
			}
		}
	}
	s.ErrorWindowSeconds = failingRun(failing, from)
	if s.Requests == 0 {
		return s, fmt.Errorf("no client outside zone a called the probe Service between %s and %s", from.Format(time.TimeOnly), to.Format(time.TimeOnly))
	}
	return s, nil
}

// failingRun is the longest run of consecutive whole seconds since from
// in each of which a call in failing started, in seconds.
func failingRun(failing []time.Time, from time.Time) float64 {
	seconds := map[int64]bool{}
	for _, at := range failing {
		seconds[int64(at.Sub(from)/time.Second)] = true
	}
	longest := 0
	for second := range seconds {
		if seconds[second-1] {
			continue // counted from the run's first second
		}
		run := 1
		for seconds[second+int64(run)] {
			run++
		}
		longest = max(longest, run)
	}
	return float64(longest)
}

func sum(values iter.Seq[int]) int {
	n := 0
	for v := range values {
		n += v
	}
	return n
}

// perZone formats pod counts by zone, in zone order.
func perZone(counts map[string]int) string {
	var parts []string
	for _, zone := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s:%d", zone, counts[zone]))
	}
	return strings.Join(parts, " ")
}

// drillTraffic is the probe Service's traffic from started until now,
// with the pods by zone before and after.
func (c *cluster) drillTraffic(started time.Time, podsBefore map[string]int) (*ServiceTraffic, error) {
	s, err := c.serviceTraffic(started, time.Now())
	if err != nil {
		return nil, err
	}
	s.PodsBefore = podsBefore
	if s.PodsAfter, err = c.probePodsPerZone(); err != nil {
		return nil, err
	}
	nodes, err := askAgain(c, "the Nodes listed", c.listNodes)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes.Items {
		r, ok := ready(n.Status.Conditions)
		if g := c.workerNamed(n.Metadata.Name); g != nil && g != c.workers[0] && ok && r.Status == "True" && r.LastTransitionTime.Before(started) {
			s.WorkersStayedReady = append(s.WorkersStayedReady, n.Metadata.Name)
		}
	}
	return &s, nil
}

// addonImages builds the images the registry serves, from hack/tools.sh's
// builds, and names the probe's: its tag is the probe's build key.
func addonImages(rootfs string) (map[string]string, string, error) {
	toolsDir, err := tools.Dir()
	if err != nil {
		return nil, "", err
	}
	cache, err := tools.CacheDir()
	if err != nil {
		return nil, "", err
	}
	probe, err := filepath.EvalSymlinks(filepath.Join(toolsDir, "probe"))
	if err != nil {
		return nil, "", err
	}
	tag := filepath.Base(filepath.Dir(probe))
	images, err := lab.BuildAddonImages(toolsDir, rootfs, filepath.Join(cache, "assets", "images"), tag)
	return images, lab.ProbeImage + ":" + tag, err
}
