package awsdouble

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

// nodeRoot is the Debian 12 image kubeha's rehearsal boots nodes from,
// with the AWS CLI they run, as a private overlay (the image itself stays
// untouched, as running nodes share it); built first if need be.
func nodeRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		tools.Unavailable(t, "running the node's AWS CLI needs chroot, so root")
	}
	tools.Need(t, "debootstrap")
	rootfs, err := tools.Rootfs(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(dir, "merged")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", rootfs, dir, dir)
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(root, syscall.MNT_DETACH) })
	return root
}

// The node scripts' exact AWS CLI calls, made by the node's own AWS CLI
// (Debian 12's awscli) in a chroot, against the double over TLS.
func TestAWSCLIAgainstTheDouble(t *testing.T) {
	rootfs := nodeRoot(t)
	cloud := NewCloud("eu-west-1")
	cloud.AttachDelay = 100 * time.Millisecond
	cloud.Logf = t.Logf
	attached := make(chan string, 1)
	cloud.OnAttach = func(volumeID, instanceID, device string) error {
		attached <- volumeID + " " + instanceID + " " + device
		return nil
	}
	ca, err := pki.Issue(pki.Spec{CommonName: "awsdouble-test-ca", IsCA: true, ValidityHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(cloud)
	if srv.TLS, err = cloud.TLSConfig(ca, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	srv.StartTLS()
	defer srv.Close()

	// The chroot shares this network namespace, so it reaches 127.0.0.1.
	dir, err := os.MkdirTemp(filepath.Join(rootfs, "tmp"), "awsdouble-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	inRoot := "/tmp/" + filepath.Base(dir)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	awsAs := func(accessKey string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command("chroot", append([]string{rootfs, "env", "-i", "PATH=/usr/bin:/bin", "HOME=" + inRoot,
			"AWS_ACCESS_KEY_ID=" + accessKey, "AWS_SECRET_ACCESS_KEY=secret", "AWS_CA_BUNDLE=" + inRoot + "/ca.pem",
			"AWS_DEFAULT_REGION=eu-west-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=",
			"aws", "--endpoint-url", srv.URL}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if stderr.Len() > 0 {
			t.Logf("aws %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
		}
		return strings.TrimSpace(string(out)), code
	}
	aws := func(args ...string) (string, int) {
		t.Helper()
		return awsAs("AKIADOUBLE", args...)
	}

	// etcd-bootstrap.sh attach_volume: poll who holds the volume, attach it.
	cloud.AddVolume(Volume{ID: "vol-0a", Zone: "eu-west-1a", SizeGiB: 8})
	cloud.AddInstance(Instance{ID: "i-0a1", Zone: "eu-west-1a", Region: "eu-west-1"})
	holder := []string{"ec2", "describe-volumes", "--volume-ids", "vol-0a", "--query", "Volumes[0].Attachments[0].InstanceId", "--output", "text"}
	if out, code := aws(holder...); code != 0 || out != "None" {
		t.Errorf("describe-volumes of an available volume: exit %d, %q, want None", code, out)
	}
	out, code := aws("ec2", "attach-volume", "--volume-id", "vol-0a", "--instance-id", "i-0a1", "--device", "/dev/xvdf")
	var attachment struct{ State, InstanceId, VolumeId, Device string }
	if err := json.Unmarshal([]byte(out), &attachment); code != 0 || err != nil || attachment.State != "attaching" || attachment.Device != "/dev/xvdf" {
		t.Errorf("attach-volume: exit %d, %q", code, out)
	}
	select {
	case got := <-attached:
		if got != "vol-0a i-0a1 /dev/xvdf" {
			t.Errorf("OnAttach(%s)", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnAttach was never called")
	}
	waitFor(t, func() bool { v, _ := cloud.Volume("vol-0a"); return v.Attachment.State == Attached })
	if out, code := aws(holder...); code != 0 || out != "i-0a1" {
		t.Errorf("describe-volumes once attached: exit %d, %q, want i-0a1", code, out)
	}
	if _, code := aws("ec2", "attach-volume", "--volume-id", "vol-0a", "--instance-id", "i-0a1", "--device", "/dev/xvdf"); code != 254 {
		t.Errorf("attaching an attached volume: exit %d, want 254 (VolumeInUse)", code)
	}

	// control-plane-csr-approver.sh: the running instance of a private DNS
	// name in the cluster.
	cloud.AddInstance(Instance{ID: "i-0b2", Zone: "eu-west-1b", Region: "eu-west-1", PrivateIP: "10.0.2.7", Hostname: "ip-10-0-2-7",
		Tags: map[string]string{"kubernetes.io/cluster/c1": "owned"}})
	named := func(name, cluster string) []string {
		return []string{"ec2", "describe-instances", "--output", "json", "--filters", "Name=private-dns-name,Values=" + name,
			"Name=instance-state-name,Values=running", "Name=tag:kubernetes.io/cluster/" + cluster + ",Values=owned"}
	}
	var described struct {
		Reservations []struct {
			Instances []struct{ InstanceId, PrivateDnsName, PrivateIpAddress string }
		}
	}
	out, code = aws(named("ip-10-0-2-7", "c1")...)
	if err := json.Unmarshal([]byte(out), &described); code != 0 || err != nil || len(described.Reservations) != 1 ||
		described.Reservations[0].Instances[0].PrivateIpAddress != "10.0.2.7" || described.Reservations[0].Instances[0].PrivateDnsName != "ip-10-0-2-7" {
		t.Errorf("describe-instances of a node's name: exit %d, %s", code, out)
	}
	// The same by instance ID, as the approver looks up a worker's token.
	byID := append([]string{}, named("i-0b2", "c1")...)
	byID[5] = "Name=instance-id,Values=i-0b2"
	if out, code := aws(byID...); code != 0 || !strings.Contains(out, `"PrivateDnsName": "ip-10-0-2-7"`) {
		t.Errorf("describe-instances by instance ID: exit %d, %s", code, out)
	}
	// worker-join-token.sh: the instance's role session names itself.
	session, code := awsAs(accessKeyID("i-0b2"), "sts", "get-caller-identity", "--query", "UserId", "--output", "text")
	if want := RoleID("") + ":i-0b2"; code != 0 || session != want {
		t.Errorf("sts get-caller-identity as i-0b2: exit %d, %q, want %q", code, session, want)
	}
	if _, code := aws("sts", "get-caller-identity"); code == 0 {
		t.Error("sts get-caller-identity with credentials of no instance succeeded")
	}
	for _, other := range [][]string{named("ip-10-0-2-7", "c2"), named("ip-10-0-1-5", "c1")} {
		if out, code := aws(other...); code != 0 || strings.Contains(out, "i-0") {
			t.Errorf("%v: exit %d, %s, want no instance", other, code, out)
		}
	}

	// etcd-bootstrap.sh upsert_dns, in its own JSON style.
	cloud.AddHostedZone("Z0KUBEHA", "c1.kubeha.internal")
	out, code = aws("route53", "change-resource-record-sets", "--hosted-zone-id", "Z0KUBEHA", "--change-batch",
		`{"Changes":[{"Action":"UPSERT","ResourceRecordSet":{"Name":"etcd-a.c1.kubeha.internal","Type":"A","TTL":30,"ResourceRecords":[{"Value":"10.61.1.2"}]}}]}`)
	var changed struct{ ChangeInfo struct{ Id, Status string } }
	if err := json.Unmarshal([]byte(out), &changed); code != 0 || err != nil || changed.ChangeInfo.Status != "PENDING" ||
		!strings.HasPrefix(changed.ChangeInfo.Id, "/change/C") {
		t.Fatalf("change-resource-record-sets: exit %d, %q", code, out)
	}
	if out, code := aws("route53", "get-change", "--id", changed.ChangeInfo.Id, "--query", "ChangeInfo.Status", "--output", "text"); code != 0 || out != "INSYNC" {
		t.Errorf("get-change: exit %d, %q, want INSYNC", code, out)
	}
	if ips := cloud.Resolve("etcd-a.c1.kubeha.internal."); len(ips) != 1 || ips[0] != "10.61.1.2" {
		t.Errorf("DNS after the change: %v", ips)
	}

	// fetch_certs: the secret, by ARN and by name, is printed as is.
	arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:c1-etcd-a-AbCdEf"
	value := `{"ca.crt":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}`
	cloud.AddSecret(arn, "c1-etcd-a", value)
	for _, id := range []string{arn, "c1-etcd-a"} {
		if out, code := aws("secretsmanager", "get-secret-value", "--secret-id", id, "--query", "SecretString", "--output", "text"); code != 0 || out != value {
			t.Errorf("get-secret-value %s: exit %d, %q", id, code, out)
		}
	}
	if _, code := aws("secretsmanager", "get-secret-value", "--secret-id", "nothing"); code != 254 {
		t.Errorf("get-secret-value of no secret: exit %d, want 254", code)
	}

	// control-plane-bootstrap.sh record_version: created, then overwritten.
	for _, version := range []string{"v1.35.8", "v1.36.3"} {
		if _, code := aws("ssm", "put-parameter", "--name", "/kubeha/c1/kubernetes-version", "--type", "String", "--overwrite", "--value", version); code != 0 {
			t.Errorf("put-parameter %s: exit %d", version, code)
		}
	}
	if v, _ := cloud.Parameter("/kubeha/c1/kubernetes-version"); v != "v1.36.3" {
		t.Errorf("after put-parameter: %q", v)
	}

	// etcd-start.sh has_snapshots, then etcd-backup.sh: an empty prefix
	// lists with exit 1; a snapshot bigger than one multipart chunk (8 MiB)
	// goes up with SSE-KMS, lists, and comes back whole.
	if err := cloud.AddBucket("c1-etcd-backups"); err != nil {
		t.Fatal(err)
	}
	if out, code := aws("s3", "ls", "s3://c1-etcd-backups/snapshots/"); code != 1 || out != "" {
		t.Errorf("s3 ls of an empty prefix: exit %d, %q, want exit 1", code, out)
	}
	snapshot := make([]byte, 9<<20)
	_, _ = rand.Read(snapshot)
	if err := os.WriteFile(filepath.Join(dir, "snap.db"), snapshot, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := aws("s3", "cp", inRoot+"/snap.db", "s3://c1-etcd-backups/snapshots/c1-a.db", "--sse", "aws:kms",
		"--sse-kms-key-id", "alias/c1-etcd", "--only-show-errors"); code != 0 {
		t.Errorf("s3 cp up: exit %d, %q", code, out)
	}
	if got, err := cloud.Object("c1-etcd-backups", "snapshots/c1-a.db"); err != nil || !bytes.Equal(got, snapshot) {
		t.Errorf("uploaded snapshot: %d bytes, %v; want %d bytes", len(got), err, len(snapshot))
	}
	if obj, err := cloud.s3store.HeadObject("c1-etcd-backups", "snapshots/c1-a.db"); err != nil ||
		obj.Metadata["X-Amz-Server-Side-Encryption"] != "aws:kms" || obj.Metadata["X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"] != "alias/c1-etcd" {
		t.Errorf("the snapshot was not put with SSE-KMS: %v %v", obj, err)
	}
	if out, code := aws("s3", "ls", "s3://c1-etcd-backups/snapshots/"); code != 0 || !strings.HasSuffix(out, " 9437184 c1-a.db") {
		t.Errorf("s3 ls of the snapshots: exit %d, %q", code, out)
	}
	if out, code := aws("s3", "cp", "s3://c1-etcd-backups/snapshots/c1-a.db", inRoot+"/restored.db", "--only-show-errors"); code != 0 {
		t.Errorf("s3 cp down: exit %d, %q", code, out)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "restored.db")); err != nil || !bytes.Equal(got, snapshot) {
		t.Errorf("downloaded snapshot: %d bytes, %v; want %d bytes", len(got), err, len(snapshot))
	}

	// The snapshot metric, as etcd-backup.sh sends it.
	if out, code := aws("cloudwatch", "put-metric-data", "--namespace", "kubeha", "--metric-name", "EtcdSnapshotUploaded",
		"--dimensions", "Cluster=c1", "--value", "1", "--unit", "Count"); code != 0 {
		t.Errorf("put-metric-data: exit %d, %q", code, out)
	}
	if m := cloud.Metrics(); len(m) != 1 || m[0].Namespace != "kubeha" || m[0].Name != "EtcdSnapshotUploaded" ||
		m[0].Dimensions["Cluster"] != "c1" || m[0].Value != 1 || m[0].Unit != "Count" {
		t.Errorf("metrics: %+v", m)
	}

	// The launch hook, as bootstrap-steps.sh finds and completes it, and
	// the health mark it sets when it gives up.
	cloud.JoinGroup("i-0a1", "c1-etcd-a", "kubeha-launch")
	where := []string{"autoscaling", "describe-auto-scaling-instances", "--instance-ids", "i-0a1",
		"--query", "AutoScalingInstances[0].[AutoScalingGroupName,LifecycleState]", "--output", "text"}
	if out, code := aws(where...); code != 0 || out != "c1-etcd-a\tPending:Wait" {
		t.Errorf("describe-auto-scaling-instances: exit %d, %q", code, out)
	}
	complete := []string{"autoscaling", "complete-lifecycle-action", "--lifecycle-hook-name", "kubeha-launch",
		"--auto-scaling-group-name", "c1-etcd-a", "--instance-id", "i-0a1", "--lifecycle-action-result", "CONTINUE"}
	if out, code := aws(complete...); code != 0 {
		t.Errorf("complete-lifecycle-action: exit %d, %q", code, out)
	}
	if g, _ := cloud.GroupInstance("i-0a1"); g.State != InService {
		t.Errorf("after CONTINUE: %+v, want InService", g)
	}
	if _, code := aws(complete...); code != 254 {
		t.Errorf("completing a completed hook: exit %d, want 254", code)
	}
	if out, code := aws("autoscaling", "set-instance-health", "--instance-id", "i-0a1", "--health-status", "Unhealthy"); code != 0 {
		t.Errorf("set-instance-health: exit %d, %q", code, out)
	}
	if g, _ := cloud.GroupInstance("i-0a1"); g.Healthy {
		t.Errorf("after set-instance-health Unhealthy: %+v", g)
	}
	if out, code := aws("autoscaling", "describe-auto-scaling-instances", "--instance-ids", "i-none",
		"--query", "AutoScalingInstances[0].[AutoScalingGroupName,LifecycleState]", "--output", "text"); code != 0 || out != "None" {
		t.Errorf("describe-auto-scaling-instances of an instance in no group: exit %d, %q, want None", code, out)
	}
	// etcd-leave.sh's lookup of a silent member's leaving instance, by the
	// group's tags, as the CLI filters and queries.
	cloud.SetGroup("c1-etcd-b", map[string]string{"kubernetes.io/cluster/c1": "owned", "kubeha.io/etcd-member": "etcd-b"}, "lt-0b", "1")
	cloud.SetGroup("c2-etcd-b", map[string]string{"kubernetes.io/cluster/c2": "owned", "kubeha.io/etcd-member": "etcd-b"}, "lt-0c", "1")
	cloud.AddInstance(Instance{ID: "i-0b1", Zone: "eu-west-1b"})
	cloud.JoinGroup("i-0b1", "c1-etcd-b", "")
	cloud.SetTerminationHook("c1-etcd-b", "kubeha-etcd-leave", time.Hour)
	if err := cloud.TerminateInGroup("i-0b1"); err != nil {
		t.Fatal(err)
	}
	leaving := []string{"autoscaling", "describe-auto-scaling-groups", "--output", "text",
		"--filters", "Name=tag:kubernetes.io/cluster/c1,Values=owned", "Name=tag:kubeha.io/etcd-member,Values=etcd-b",
		"--query", "AutoScalingGroups[0].[AutoScalingGroupName, Instances[?LifecycleState=='Terminating:Wait'].InstanceId | [0]]"}
	if out, code := aws(leaving...); code != 0 || out != "c1-etcd-b\ti-0b1" {
		t.Errorf("describe-auto-scaling-groups: exit %d, %q, want c1-etcd-b and its leaving i-0b1", code, out)
	}
	// control-plane-worker-drain.sh's one listing of the worker groups
	// (tagged with a pool) and their instances' lifecycle states: one
	// launching, one leaving; the etcd groups are not listed.
	cloud.SetGroup("c1-workers-a", map[string]string{"kubernetes.io/cluster/c1": "owned", "kubeha.io/pool": "general"}, "lt-0w", "1")
	cloud.AddInstance(Instance{ID: "i-0w1", Zone: "eu-west-1a"})
	cloud.AddInstance(Instance{ID: "i-0w2", Zone: "eu-west-1a"})
	cloud.JoinGroup("i-0w1", "c1-workers-a", "kubeha-launch")
	cloud.JoinGroup("i-0w2", "c1-workers-a", "")
	cloud.SetTerminationHook("c1-workers-a", "kubeha-drain", time.Hour)
	if err := cloud.TerminateInGroup("i-0w2"); err != nil {
		t.Fatal(err)
	}
	out, code = aws("autoscaling", "describe-auto-scaling-groups", "--output", "json",
		"--filters", "Name=tag:kubernetes.io/cluster/c1,Values=owned", "Name=tag-key,Values=kubeha.io/pool")
	var workerGroups struct {
		AutoScalingGroups []struct {
			AutoScalingGroupName string
			Instances            []struct{ InstanceId, LifecycleState string }
		}
	}
	if err := json.Unmarshal([]byte(out), &workerGroups); code != 0 || err != nil || len(workerGroups.AutoScalingGroups) != 1 ||
		workerGroups.AutoScalingGroups[0].AutoScalingGroupName != "c1-workers-a" ||
		fmt.Sprint(workerGroups.AutoScalingGroups[0].Instances) != "[{i-0w1 Pending:Wait} {i-0w2 Terminating:Wait}]" {
		t.Errorf("describe-auto-scaling-groups of the worker groups: exit %d, %v, %s; want c1-workers-a with i-0w1 launching and i-0w2 leaving", code, err, out)
	}
	// A refusing fault fails the call at once, with no retry by the CLI.
	cloud.Fault(EC2, "AttachVolume", Fault{Refuse: "UnauthorizedOperation"})
	if _, code := aws("ec2", "attach-volume", "--volume-id", "vol-0a", "--instance-id", "i-0a1", "--device", "/dev/xvdf"); code != 254 {
		t.Errorf("attach-volume under a refusing fault: exit %d, want 254", code)
	}
	cloud.Fault(EC2, "AttachVolume", Fault{})

	// What the CLI sent, as the call log shows it: a snapshot of 9 MiB goes
	// up in two parts and comes down in two ranged GETs.
	var calls []string
	for _, call := range cloud.Calls() {
		calls = append(calls, fmt.Sprintf("%s %s %d", call.Service, call.Action, call.Status))
	}
	want := []string{"ec2 DescribeVolumes 200", "ec2 AttachVolume 200", "ec2 DescribeVolumes 200", "ec2 AttachVolume 400",
		"ec2 DescribeInstances 200", "ec2 DescribeInstances 200",
		"sts GetCallerIdentity 200", "sts GetCallerIdentity 403", "ec2 DescribeInstances 200", "ec2 DescribeInstances 200",
		"route53 ChangeResourceRecordSets 200", "route53 GetChange 200",
		"secretsmanager GetSecretValue 200", "secretsmanager GetSecretValue 200", "secretsmanager GetSecretValue 400",
		"ssm PutParameter 200", "ssm PutParameter 200",
		"s3 ListObjectsV2 200", "s3 CreateMultipartUpload 200", "s3 UploadPart 200", "s3 UploadPart 200", "s3 CompleteMultipartUpload 200",
		"s3 ListObjectsV2 200", "s3 HeadObject 200", "s3 GetObject 206", "s3 GetObject 206", "monitoring PutMetricData 200",
		"autoscaling DescribeAutoScalingInstances 200", "autoscaling CompleteLifecycleAction 200", "autoscaling CompleteLifecycleAction 400",
		"autoscaling SetInstanceHealth 200", "autoscaling DescribeAutoScalingInstances 200", "autoscaling DescribeAutoScalingGroups 200",
		"autoscaling DescribeAutoScalingGroups 200", "ec2 AttachVolume 400"}
	if !slices.Equal(calls, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
