package rehearsal

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/awsdouble"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/mockrun"
)

// workerName is the worker the rehearsal boots in zone i, from that
// zone's launch template of the stack's first pool.
func workerName(i int) string { return fmt.Sprintf("worker-%c", 'a'+i) }

// WorkerBoot is how a worker booted from its launch template's user-data
// joined with a token of its own.
type WorkerBoot struct {
	// JoinedSeconds is from its launch until its Node was registered with
	// a kubelet client certificate the approver let it have.
	JoinedSeconds float64 `json:"joinedSeconds"`
	// ClientCertificate is the subject of its kubelet's client
	// certificate, signed by the cluster CA.
	ClientCertificate string `json:"clientCertificate"`
	// Approved is the approver's log line for its client certificate.
	Approved string `json:"approved"`
}

// workerTemplate is the Name of zone a's first worker launch template.
func workerTemplate(resources []mockrun.Resource, clusterName, zone string) (string, error) {
	for _, r := range resources {
		tags := r.Tags()
		if r.Type == "aws:ec2/launchTemplate:LaunchTemplate" && tags[bootstrap.PoolTag] != "" &&
			strings.HasPrefix(tags["Name"], clusterName+"-") && strings.HasSuffix(tags["Name"], "-"+zone) {
			return tags["Name"], nil
		}
	}
	return "", fmt.Errorf("the stack declares no worker launch template in %s", zone)
}

// terminationHook is the hook the stack declares on the group of launch
// template template (its resource name, worker or etcd member) for its
// leaving instances, and its timeout; "" if none.
func terminationHook(resources []mockrun.Resource, template string) (string, time.Duration) {
	for _, r := range resources {
		if r.Type == "aws:autoscaling/lifecycleHook:LifecycleHook" && (r.Name == template+"-drain" || r.Name == template+"-leave") &&
			r.Inputs["lifecycleTransition"].StringValue() == "autoscaling:EC2_INSTANCE_TERMINATING" {
			return r.Inputs["name"].StringValue(), time.Duration(r.Inputs["heartbeatTimeout"].NumberValue()) * time.Second
		}
	}
	return "", 0
}

// launchWorkers starts a worker in every zone, each from its zone's
// launch template's user-data, as the pool's auto-scaling groups would
// (one instance each: the rehearsal caps every group at one);
// checkWorker later says how the first joined.
func (c *cluster) launchWorkers() (time.Time, error) {
	launched := time.Now()
	for i, zone := range c.stack.zones {
		template, err := workerTemplate(c.stack.declared, c.stack.clusterName, zone)
		if err != nil {
			return launched, err
		}
		g, err := c.group(zoneNetwork(i), workerName(i), zone, zoneNet(i)+".31", "Name", template)
		if err != nil {
			return launched, err
		}
		if hook, timeout := terminationHook(c.stack.declared, template); hook != "" {
			c.cloud.SetTerminationHook(g.Name, hook, timeout)
		}
		c.workers = append(c.workers, g)
	}
	return launched, nil
}

// checkWorker waits until zone a's worker's Node is registered: its own
// join token was handed over through STS and S3, made a token by the
// approver, and its kubelet's client certificate approved for its own
// name.
func (c *cluster) checkWorker(launched time.Time) (WorkerBoot, error) {
	var w WorkerBoot
	g, workerName := c.workers[0], workerName(0)
	var node struct {
		Metadata objectMeta `json:"metadata"`
	}
	if _, err := c.waitFor(workerName+"'s Node registered", 12*time.Minute, func() error {
		code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/nodes/"+workerName, nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("HTTP %d %.200s (%v)", code, body, err)
		}
		return json.Unmarshal([]byte(body), &node)
	}); err != nil {
		return w, fmt.Errorf("%w\n%s\n%s", err, g.BootstrapLog(), c.nodes[0].UnitLog(bootstrap.CSRApproverUnit))
	}
	// Registered while the rehearsal checked other things: the Node's own
	// record says when.
	w.JoinedSeconds = node.Metadata.CreationTimestamp.Sub(launched).Seconds()
	out, err := g.Instance.Exec("cat", "/var/lib/kubelet/pki/kubelet-client-current.pem")
	if err != nil {
		return w, fmt.Errorf("%s's kubelet client certificate: %w", workerName, err)
	}
	cert, err := c.clientCertificate(out)
	if err != nil {
		return w, fmt.Errorf("%s's kubelet client certificate: %w", workerName, err)
	}
	w.ClientCertificate = cert.Subject.String()
	for _, n := range c.nodes {
		for _, line := range strings.Split(n.UnitLog(bootstrap.CSRApproverUnit), "\n") {
			// Kubelets name their requests csr-<random>.
			if strings.Contains(line, "certificate request csr-") && strings.Contains(line, "Approved: the kubelet client certificate") {
				w.Approved = n.Name + ": " + line
			}
		}
	}
	if w.ClientCertificate != "CN=system:node:"+workerName+",O=system:nodes" || w.Approved == "" {
		return w, fmt.Errorf("%s joined as %q, approved by %q; want its own name, approved by kubeha's approver", workerName, w.ClientCertificate, w.Approved)
	}
	return w, nil
}

// loseWorker terminates zone a's worker through its group, as a scale-in
// or an instance AWS retires does. The group's drain hook holds it until
// the control plane drained it (control-plane-worker-drain.sh): its pods
// run again in zones b and c while it still runs. It then goes, its Node
// is deleted once the cloud controller manager finds its instance gone,
// and its group launches a replacement, which joins; CoreDNS's pod for
// zone a, which its spread keeps from the other zones, runs on it, and a
// probe pod is put back in zone a as the README says.
func loseWorker(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	w, err := c.settle()
	if err != nil {
		return Drill{}, err
	}
	worker := c.workers[0]
	d := Drill{RecoveryBoundSeconds: seconds(c.stack.bounds().rescheduled)}
	c.cloud.OnTerminate = c.replaceTerminated
	defer func() { c.cloud.OnTerminate = nil }()
	start := time.Now()
	id := worker.Instance.ID
	if err := c.cloud.TerminateInGroup(id); err != nil {
		return d, err
	}
	if d.PodsRescheduledSeconds, err = c.waitRescheduled(start); err != nil {
		return d, err
	}
	c.controllerManagerTakeover(&d, w, start)
	d.RecoverySeconds = d.PodsRescheduledSeconds
	p.record(&d, start, time.Now())
	drained, err := c.waitFor(worker.Name+" let go by its drain hook", bootstrap.DrainHookTimeout+time.Minute, func() error {
		if g, _ := c.cloud.GroupInstance(id); g.State != awsdouble.Terminating {
			return fmt.Errorf("%s is %s", id, g.State)
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	if g, _ := c.cloud.GroupInstance(id); !g.Released {
		return d, fmt.Errorf("%s went when its drain hook timed out: no control-plane node drained it", worker.Name)
	}
	d.DrainedSeconds = seconds(drained)
	if _, err := c.waitFor(worker.Name+"'s Node deleted", 2*time.Minute, func() error {
		if _, ok := c.nodesDeleted.Load(worker.Name); !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	}); err != nil {
		return d, err
	}
	at, _ := c.nodesDeleted.Load(worker.Name)
	d.note(fmt.Sprintf("%s drained and let go by its hook %.0fs in, its Node deleted %.0fs in, its instance gone", worker.Name, drained.Seconds(), at.(time.Time).Sub(start).Seconds()))
	// The group launched the replacement once the Node was deleted.
	took, err := c.waitFor(worker.Name+"'s replacement Ready", c.bootLimit(), func() error {
		nodes, err := c.listNodes()
		if err != nil {
			return err
		}
		for _, n := range nodes.Items {
			if r, _ := ready(n.Status.Conditions); n.Metadata.Name == worker.Name && r.Status == "True" && n.Metadata.Labels[bootstrap.ZoneLabel] != "" {
				return nil
			}
		}
		return fmt.Errorf("no Ready Node %s", worker.Name)
	})
	log := worker.BootstrapLog()
	if err != nil {
		return d, bootFailure(err, log)
	}
	// Its CoreDNS pod waited unschedulable; the scheduler tries such pods
	// again on a Node event, and at least every 5 minutes.
	back := time.Now()
	coreDNS, err := c.waitSpread("CoreDNS", "kube-system", coreDNSSelector, 3, 6*time.Minute)
	if err != nil {
		return d, err
	}
	d.note(fmt.Sprintf("the replacement Ready %.0fs after it launched (its steps took: %s), CoreDNS by zone %s %.0fs later", took.Seconds(), stepTimes(log), perZone(coreDNS), time.Since(back).Seconds()))
	if err := heal(c, p, &d); err != nil {
		return d, err
	}
	// The drain took the probe's zone-a client (a bare pod); the probe's
	// pods stay in zones b and c until moved, as after a zone returns
	// (drill e).
	if err := c.restartClients(); err != nil {
		return d, err
	}
	// Called first: a return reads d in no set order with the call.
	err = c.respread(&d)
	return d, err
}
