package rehearsal

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
)

// restoreLimit is how long the restore drill may take from stopping the
// control plane to the cluster whole again.
const restoreLimit = 8 * time.Minute

// staticPods are the control plane's manifests the restore runbook moves
// out of the kubelet's folder and back.
const staticPods = "kube-apiserver.yaml kube-controller-manager.yaml kube-scheduler.yaml"

// restoreFromSnapshot follows the README's restore runbook on the whole
// cluster, scripted: every etcd member's data is lost (instances gone,
// volumes blank), and the cluster comes back from the snapshot the backup
// timer put in S3. Every write acknowledged before the snapshot must be
// there after it; revisions must move on past every one a client saw, so
// that watchers relist instead of missing changes.
func restoreFromSnapshot(_ context.Context, c *cluster, p *probe) (Drill, error) {
	// An operator's procedure: bound by how long the drill waits.
	d := Drill{RecoveryBoundSeconds: seconds(restoreLimit)}
	if _, err := c.settle(); err != nil {
		return d, err
	}
	bucket, err := lab.DeclaredBucket(c.stack.declared, "-backups")
	if err != nil {
		return d, err
	}
	// A snapshot now, as the backup timer takes one: every member runs the
	// service, only the leader uploads.
	had, err := c.cloud.List(bucket, "snapshots/")
	if err != nil {
		return d, err
	}
	snapshotAt := time.Now()
	for _, m := range c.members {
		if _, err := m.Instance.Exec("systemctl", "start", "kubeha-etcd-backup.service"); err != nil {
			return d, err
		}
	}
	have, err := c.cloud.List(bucket, "snapshots/")
	if err != nil {
		return d, err
	}
	var snapshot string
	for _, key := range have {
		if !slices.Contains(had, key) {
			snapshot = key
		}
	}
	if snapshot == "" {
		return d, fmt.Errorf("the backup service uploaded no snapshot to %s", bucket)
	}
	seen, err := c.probeRevision()
	if err != nil {
		return d, err
	}

	start := time.Now()
	// Runbook step 2: stop the control plane on every node.
	for _, n := range c.nodes {
		if _, err := n.Instance.Exec("sh", "-c", "cd /etc/kubernetes/manifests && mv "+staticPods+" .."); err != nil {
			return d, err
		}
	}
	// Quorum is lost for good: every member's instance and data go, and
	// each group launches a fresh instance on a blank volume.
	for _, m := range c.members {
		m.Kill()
		volume, err := c.volumeOf(m.Name)
		if err != nil {
			return d, err
		}
		if err := c.cloud.WipeVolume(volume); err != nil {
			return d, err
		}
	}
	for _, m := range c.members {
		if err := m.Start(); err != nil {
			return d, err
		}
	}
	// A fresh member finds the cluster's marker and no quorum to rejoin,
	// so etcd does not start: it waits for the restore, its first boot
	// ready for it once the volume is mounted and the certificates are in.
	if _, err := c.waitFor("fresh members ready to restore", launchLimit, func() error {
		for _, m := range c.members {
			if _, err := m.Instance.Exec("test", "-e", bootstrap.BootstrapStateDir+"/certs.done"); err != nil {
				return fmt.Errorf("%s has not fetched its certificates yet", m.Name)
			}
		}
		return nil
	}); err != nil {
		return d, err
	}
	// Runbook steps 3 to 5: hold etcd on every member (a fresh member's
	// first boot still retries starting it), restore the same snapshot
	// with the same new token on every member, release each.
	token := "kubeha-restore-" + time.Now().UTC().Format("20060102T150405")
	for _, args := range [][]string{{"hold"}, {"s3://" + bucket + "/" + snapshot, token}, {"release"}} {
		for _, m := range c.members {
			if out, err := m.Instance.Exec(append([]string{bootstrap.EtcdRestoreCommand}, args...)...); err != nil {
				return d, fmt.Errorf("%s: kubeha-etcd-restore %s: %w\n%s", m.Name, args[0], err, out)
			}
		}
	}
	if _, err := c.waitFor("the restored etcd healthy", launchLimit, c.etcdHealthy); err != nil {
		for i, m := range c.members {
			if healthy, _ := c.etcdState(i); !healthy {
				err = fmt.Errorf("%w\n%s's etcd:\n%s", err, m.Name, m.RecentLog("etcd.service", 60))
			}
		}
		return d, err
	}
	// Step 6: the control plane again, with fresh caches.
	for _, n := range c.nodes {
		if _, err := n.Instance.Exec("sh", "-c", "cd /etc/kubernetes && mv "+staticPods+" manifests/"); err != nil {
			return d, err
		}
	}
	if _, err := c.waitFor("the cluster whole after the restore", restoreLimit-time.Since(start), c.fullyHealthy); err != nil {
		return d, err
	}
	d.RecoverySeconds = seconds(time.Since(start))
	p.record(&d, start, time.Now())
	d.RewoundWrites = p.rewind(snapshotAt)
	if err := heal(c, p, &d); err != nil {
		return d, err
	}
	for _, m := range c.members {
		if !m.InService() {
			return d, fmt.Errorf("%s's fresh instance is not in service after the restore:\n%s", m.Name, m.BootstrapLog())
		}
	}
	// Watches: a client's last revision is older than anything served
	// now, and asking to watch from it is answered 410 Gone, so the client
	// lists again instead of missing what changed.
	now, err := c.probeRevision()
	if err != nil {
		return d, err
	}
	if now <= seen {
		return d, fmt.Errorf("revision %d after the restore, %d seen before: watchers would miss changes", now, seen)
	}
	anyAnswer := func(int) bool { return true }
	code, body, err := c.patientGet(fmt.Sprintf("%s?watch=1&timeoutSeconds=1&resourceVersion=%d", probePath, seen), anyAnswer)
	if err != nil || (code != http.StatusGone && !strings.Contains(body, `"code":410`)) {
		return d, fmt.Errorf("a watch from revision %d before the restore: HTTP %d %v %.300s, want 410 Gone", seen, code, err, body)
	}
	d.note(fmt.Sprintf("restored %s on 3 fresh members; %d writes acknowledged after the snapshot rewound; revision %d before, %d after; a watch from before is told 410 Gone",
		snapshot, d.RewoundWrites, seen, now))
	return d, nil
}

// probeRevision is the resourceVersion of the probe's objects as listed
// now through the load balancer: the cluster's revision.
func (c *cluster) probeRevision() (int64, error) {
	body, err := c.listProbe("limit=1")
	if err != nil {
		return 0, err
	}
	var list struct {
		Metadata struct{ ResourceVersion string }
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return 0, err
	}
	return strconv.ParseInt(list.Metadata.ResourceVersion, 10, 64)
}
