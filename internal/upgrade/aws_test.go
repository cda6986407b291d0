package upgrade

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/kubeha/kubeha/internal/awsdouble"
	"github.com/kubeha/kubeha/internal/bootstrap"
)

// awsAgainst is an AWS SDK configuration whose every call goes to the
// double, over TLS, signed.
func awsAgainst(t *testing.T, cloud *awsdouble.Cloud) aws.Config {
	server := httptest.NewTLSServer(cloud)
	t.Cleanup(server.Close)
	return aws.Config{Region: "eu-west-1", HTTPClient: server.Client(), BaseEndpoint: aws.String(server.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIATEST", "secret", "")}
}

// `kubeha upgrade` replaces an instance through its group, keeping the
// group's size, and reads and moves the version record, with the AWS
// SDK's own calls against the double.
func TestAWSCallsAgainstTheDouble(t *testing.T) {
	cloud := awsdouble.NewCloud("eu-west-1")
	cfg := awsAgainst(t, cloud)
	cloud.JoinGroup("i-0123", "kubeha-dev-control-plane-eu-west-1a", "")
	terminated := make(chan string, 1)
	cloud.OnTerminate = func(id string) { terminated <- id }

	fleet := GroupFleet{Client: autoscaling.NewFromConfig(cfg), Poll: 10 * time.Millisecond}
	node := Node{Name: "ip-10-0-1-5.eu-west-1.compute.internal", ProviderID: "aws:///eu-west-1a/i-0123", ControlPlane: true}
	if err := fleet.Replace(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-terminated:
		if id != "i-0123" {
			t.Errorf("the group was asked to replace %s, want i-0123", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the group was never asked to replace the instance")
	}
	if gi, _ := cloud.GroupInstance("i-0123"); gi.State != awsdouble.Terminating {
		t.Errorf("the instance is %s, want %s", gi.State, awsdouble.Terminating)
	}
	// A worker, drained already, waits on its group's drain hook, whose
	// drainer would not find its deleted Node: Replace lets it go.
	cloud.JoinGroup("i-0456", "kubeha-dev-general-eu-west-1a", "")
	cloud.SetTerminationHook("kubeha-dev-general-eu-west-1a", bootstrap.DrainHook, time.Hour)
	worker := Node{Name: "ip-10-0-1-6.eu-west-1.compute.internal", ProviderID: "aws:///eu-west-1a/i-0456"}
	if err := fleet.Replace(context.Background(), worker); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-terminated:
		if gi, _ := cloud.GroupInstance(id); id != "i-0456" || !gi.Released {
			t.Errorf("the group let %s go (%+v), want i-0456 released from its drain hook", id, gi)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the worker waits on its drain hook, not let go")
	}
	node.ProviderID = ""
	if err := fleet.Replace(context.Background(), node); err == nil || !strings.Contains(err.Error(), "not aws:///<zone>/<instance ID>") {
		t.Errorf("a Node without a provider ID: %v", err)
	}
	node.ProviderID = "aws:///eu-west-1a/i-gone"
	if err := fleet.Replace(context.Background(), node); err == nil || !strings.Contains(err.Error(), "No managed instance found") {
		t.Errorf("an instance in no group: %v", err)
	}

	record := ParameterRecord{Client: ssm.NewFromConfig(cfg), Name: "/kubeha/kubeha-dev/kubernetes-version"}
	if _, err := record.Read(context.Background()); err == nil {
		t.Error("read a record nobody wrote")
	}
	for _, v := range []string{"v1.35.8", "v1.36.3"} {
		if err := record.Write(context.Background(), v); err != nil {
			t.Fatal(err)
		}
		if got, err := record.Read(context.Background()); err != nil || got != v {
			t.Errorf("record reads %q (%v), want %s", got, err, v)
		}
	}
}

// `kubeha upgrade` finds the cluster's etcd members' groups by their tags
// and tells an instance of an older launch template version from one of
// the group's; an instance it replaces waits on the member's leave hook.
func TestEtcdGroupsAgainstTheDouble(t *testing.T) {
	cloud := awsdouble.NewCloud("eu-west-1")
	cfg := awsAgainst(t, cloud)
	owned := func(cluster, member string) map[string]string {
		tags := map[string]string{bootstrap.ClusterTagKey(cluster): "owned"}
		if member != "" {
			tags[bootstrap.EtcdMemberTag] = member
		}
		return tags
	}
	launch := func(id, group string) {
		cloud.AddInstance(awsdouble.Instance{ID: id, Zone: "eu-west-1a"})
		cloud.JoinGroup(id, group, "")
	}
	cloud.SetGroup("kubeha-dev-etcd-a", owned("kubeha-dev", "etcd-a"), "lt-0a", "1")
	cloud.SetGroup("kubeha-dev-general-a", owned("kubeha-dev", ""), "lt-0b", "1")
	cloud.SetGroup("kubeha-prod-etcd-a", owned("kubeha-prod", "etcd-a"), "lt-0c", "1")
	launch("i-a1", "kubeha-dev-etcd-a")
	launch("i-w1", "kubeha-dev-general-a")
	launch("i-p1", "kubeha-prod-etcd-a")
	// `pulumi up` wrote the template's version 2.
	cloud.SetGroup("kubeha-dev-etcd-a", owned("kubeha-dev", "etcd-a"), "lt-0a", "2")

	fleet := GroupFleet{Client: autoscaling.NewFromConfig(cfg), Cluster: "kubeha-dev"}
	groups, err := fleet.EtcdGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := GroupInstance{ID: "i-a1", Zone: "eu-west-1a", State: "InService", Healthy: true, Current: false}
	if len(groups) != 1 || groups[0].Member != "etcd-a" || groups[0].Name != "kubeha-dev-etcd-a" || len(groups[0].Instances) != 1 || groups[0].Instances[0] != want {
		t.Fatalf("etcd groups %+v, want kubeha-dev's etcd-a alone with %+v", groups, want)
	}
	if groups[0].stale() == nil {
		t.Error("an instance of version 1 in a group at version 2 is not stale")
	}
	cloud.SetTerminationHook("kubeha-dev-etcd-a", bootstrap.EtcdLeaveHook, time.Hour)
	if err := fleet.ReplaceEtcdInstance(context.Background(), "i-a1"); err != nil {
		t.Fatal(err)
	}
	if gi, _ := cloud.GroupInstance("i-a1"); gi.State != awsdouble.TerminatingWait || cloud.TargetLifecycleState("i-a1") != "Terminated" {
		t.Errorf("the replaced member's instance is %s, its metadata's target %q: want it held on its leave hook, bound for Terminated", gi.State, cloud.TargetLifecycleState("i-a1"))
	}
	// A dead instance the hook holds is still the group's, as on AWS.
	cloud.TerminateInstance("i-a1")
	launch("i-a2", "kubeha-dev-etcd-a")
	groups, err = fleet.EtcdGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := groups[0].Instances; len(got) != 2 || got[0].State != "Terminating:Wait" || got[1].ID != "i-a2" || !got[1].Current || groups[0].stale() != nil || groups[0].steady() == nil {
		t.Errorf("after the replacement the group has %+v: want i-a2 current, nothing stale, and not steady while i-a1 leaves", got)
	}
	if _, err := (GroupFleet{Client: fleet.Client, Cluster: "kubeha-test"}).EtcdGroups(context.Background()); err == nil || !strings.Contains(err.Error(), "no auto-scaling group is tagged kubernetes.io/cluster/kubeha-test=owned") {
		t.Errorf("a cluster with no etcd groups: %v", err)
	}
}

// `kubeha upgrade` counts a new control-plane node in the load balancer
// only once its instance is a healthy target of every target group its
// group registers it in, as DescribeTargetHealth reports it.
func TestInLoadBalancerAgainstTheDouble(t *testing.T) {
	cloud := awsdouble.NewCloud("eu-west-1")
	cfg := awsAgainst(t, cloud)
	const group, arn = "kubeha-dev-control-plane-eu-west-1a", "arn:aws:elasticloadbalancing:eu-west-1:0123456789:targetgroup/kubeha-dev-api/0a"
	cloud.SetGroup(group, nil, "lt-0a", "1")
	cloud.SetTargetGroups(group, arn)
	// Another group, listed first: only the instance's own group counts.
	cloud.SetGroup("kubeha-dev-bastion", nil, "lt-0b", "1")
	cloud.SetTargetGroups("kubeha-dev-bastion", "arn:aws:elasticloadbalancing:eu-west-1:0123456789:targetgroup/kubeha-dev-ssh/0b")
	cloud.AddInstance(awsdouble.Instance{ID: "i-0123", Zone: "eu-west-1a"})
	cloud.JoinGroup("i-0123", group, "")
	state := "initial"
	var asked []string
	cloud.TargetHealth = func(tg, id string) string {
		asked = append(asked, tg+" "+id)
		return state
	}
	fleet := GroupFleet{Client: autoscaling.NewFromConfig(cfg), LoadBalancing: elb.NewFromConfig(cfg)}
	node := Node{Name: "ip-10-0-1-5.eu-west-1.compute.internal", ProviderID: "aws:///eu-west-1a/i-0123", ControlPlane: true}
	for _, s := range []string{"initial", "unhealthy", "draining"} {
		state = s
		if err := fleet.InLoadBalancer(context.Background(), node); err == nil || !strings.Contains(err.Error(), "is "+s+" in target group "+arn) {
			t.Errorf("a target %s: %v, want it not in the load balancer", s, err)
		}
	}
	state = "healthy"
	if err := fleet.InLoadBalancer(context.Background(), node); err != nil {
		t.Errorf("a healthy target: %v", err)
	}
	if want := arn + " i-0123"; len(asked) != 4 || asked[3] != want {
		t.Errorf("the load balancer was asked %q, want %q each time", asked, want)
	}
	// A group in no target group has nothing to wait for; an instance in
	// no group is an error.
	cloud.SetTargetGroups(group)
	state = "unhealthy"
	if err := fleet.InLoadBalancer(context.Background(), node); err != nil {
		t.Errorf("a group without target groups: %v", err)
	}
	node.ProviderID = "aws:///eu-west-1a/i-gone"
	if err := fleet.InLoadBalancer(context.Background(), node); err == nil || !strings.Contains(err.Error(), "in no auto-scaling group") {
		t.Errorf("an instance in no group: %v", err)
	}
	// A target group the account does not have is refused, as AWS does.
	if _, err := elb.NewFromConfig(cfg).DescribeTargetHealth(context.Background(), &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn + "x"),
		Targets: []elbtypes.TargetDescription{{Id: aws.String("i-0123")}}}); err == nil || !strings.Contains(err.Error(), "TargetGroupNotFound") {
		t.Errorf("an unknown target group: %v", err)
	}
}
