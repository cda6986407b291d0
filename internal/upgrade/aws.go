package upgrade

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/kubeapi"
)

// GroupFleet replaces a node's instance through its auto-scaling group:
// the group terminates it and, its desired capacity kept, launches a new
// one from its launch template.
type GroupFleet struct {
	Client *autoscaling.Client
	// LoadBalancing reads the health of the targets of the groups' load
	// balancers.
	LoadBalancing *elb.Client
	// Cluster names the cluster, whose tag its etcd members' groups carry.
	Cluster string
	// Poll is how often to look whether a worker waits on its drain hook.
	Poll time.Duration
}

// EtcdGroups are the groups tagged with the cluster and an etcd member.
func (f GroupFleet) EtcdGroups(ctx context.Context) ([]EtcdGroup, error) {
	pages := autoscaling.NewDescribeAutoScalingGroupsPaginator(f.Client, &autoscaling.DescribeAutoScalingGroupsInput{Filters: []astypes.Filter{
		{Name: aws.String("tag:" + bootstrap.ClusterTagKey(f.Cluster)), Values: []string{"owned"}},
		{Name: aws.String("tag-key"), Values: []string{bootstrap.EtcdMemberTag}},
	}})
	var groups []EtcdGroup
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("finding %s's etcd member groups: %w", f.Cluster, err)
		}
		for _, g := range page.AutoScalingGroups {
			group := EtcdGroup{Name: aws.ToString(g.AutoScalingGroupName)}
			for _, t := range g.Tags {
				if aws.ToString(t.Key) == bootstrap.EtcdMemberTag {
					group.Member = aws.ToString(t.Value)
				}
			}
			if g.LaunchTemplate == nil {
				return nil, fmt.Errorf("etcd member %s's group %s launches from no launch template", group.Member, group.Name)
			}
			for _, i := range g.Instances {
				group.Instances = append(group.Instances, GroupInstance{ID: aws.ToString(i.InstanceId), Zone: aws.ToString(i.AvailabilityZone),
					State: string(i.LifecycleState), Healthy: aws.ToString(i.HealthStatus) == "Healthy",
					Current: i.LaunchTemplate != nil && aws.ToString(i.LaunchTemplate.LaunchTemplateId) == aws.ToString(g.LaunchTemplate.LaunchTemplateId) &&
						aws.ToString(i.LaunchTemplate.Version) == aws.ToString(g.LaunchTemplate.Version)})
			}
			groups = append(groups, group)
		}
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("no auto-scaling group is tagged %s=owned and %s: is %s the cluster's name?", bootstrap.ClusterTagKey(f.Cluster), bootstrap.EtcdMemberTag, f.Cluster)
	}
	slices.SortFunc(groups, func(a, b EtcdGroup) int { return cmp.Compare(a.Member, b.Member) })
	return groups, nil
}

// ReplaceEtcdInstance terminates an etcd member's instance in its group;
// the member's leave hook holds it until the other members are healthy
// voters.
func (f GroupFleet) ReplaceEtcdInstance(ctx context.Context, id string) error {
	return f.terminate(ctx, id)
}

// terminate terminates instance id in its group, which keeps its size.
func (f GroupFleet) terminate(ctx context.Context, id string) error {
	_, err := f.Client.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(false)})
	if err != nil {
		return fmt.Errorf("terminating %s in its group: %w", id, err)
	}
	return nil
}

// Replace terminates n's instance in its group. A worker, drained
// already, waits on its group's drain hook (bootstrap.DrainHook) for the
// control plane to drain it, which would not find its deleted Node:
// Replace lets it go. An instance that does not wait on the hook within
// drainHookWait (a group the hook is not on yet) has nothing to let go.
func (f GroupFleet) Replace(ctx context.Context, n Node) error {
	id, err := instanceID(n)
	if err != nil {
		return err
	}
	if err := f.terminate(ctx, id); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	if n.ControlPlane {
		return nil
	}
	for deadline := time.Now().Add(drainHookWait); time.Now().Before(deadline); {
		out, err := f.Client.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			return fmt.Errorf("looking up %s's instance %s: %w", n.Name, id, err)
		}
		if len(out.AutoScalingInstances) == 0 {
			return nil
		}
		switch i := out.AutoScalingInstances[0]; aws.ToString(i.LifecycleState) {
		case "Terminating:Wait":
			_, err := f.Client.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
				AutoScalingGroupName: i.AutoScalingGroupName, InstanceId: aws.String(id),
				LifecycleHookName: aws.String(bootstrap.DrainHook), LifecycleActionResult: aws.String("CONTINUE")})
			if err != nil {
				return fmt.Errorf("letting %s's drained instance %s go: %w", n.Name, id, err)
			}
			return nil
		case "Terminating:Proceed", "Terminated":
			return nil
		}
		if err := sleep(ctx, cmp.Or(f.Poll, 2*time.Second)); err != nil {
			return err
		}
	}
	return nil
}

// InLoadBalancer fails unless n's instance is a healthy target of every
// target group its auto-scaling group registers it in: the load balancer
// sends it requests.
func (f GroupFleet) InLoadBalancer(ctx context.Context, n Node) error {
	id, err := instanceID(n)
	if err != nil {
		return err
	}
	in, err := f.Client.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		return fmt.Errorf("looking up %s's instance %s: %w", n.Name, id, err)
	}
	if len(in.AutoScalingInstances) == 0 {
		return fmt.Errorf("%s's instance %s is in no auto-scaling group", n.Name, id)
	}
	group := in.AutoScalingInstances[0].AutoScalingGroupName
	groups, err := f.Client.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{aws.ToString(group)}})
	if err != nil || len(groups.AutoScalingGroups) == 0 {
		return fmt.Errorf("looking up %s's group %s: %v", n.Name, aws.ToString(group), err)
	}
	for _, arn := range groups.AutoScalingGroups[0].TargetGroupARNs {
		out, err := f.LoadBalancing.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn),
			Targets: []elbtypes.TargetDescription{{Id: aws.String(id)}}})
		if err != nil {
			return fmt.Errorf("%s's health in target group %s: %w", n.Name, arn, err)
		}
		for _, d := range out.TargetHealthDescriptions {
			if d.TargetHealth == nil || d.TargetHealth.State != elbtypes.TargetHealthStateEnumHealthy {
				state := "unknown"
				if d.TargetHealth != nil {
					state = string(d.TargetHealth.State)
				}
				return fmt.Errorf("%s's instance %s is %s in target group %s", n.Name, id, state, arn)
			}
		}
	}
	return nil
}

// drainHookWait is how long a terminated worker may take to wait on its
// drain hook: Auto Scaling moves it there within seconds.
const drainHookWait = 30 * time.Second

// instanceID is the EC2 instance of a Node, from its provider ID
// (aws:///<zone>/<instance ID>), which the cloud controller manager sets.
func instanceID(n Node) (string, error) {
	rest, ok := strings.CutPrefix(n.ProviderID, "aws:///")
	_, id, found := strings.Cut(rest, "/")
	if !ok || !found || !strings.HasPrefix(id, "i-") {
		return "", fmt.Errorf("node %s has provider ID %q, not aws:///<zone>/<instance ID>: the cloud controller manager has not initialised it", n.Name, n.ProviderID)
	}
	return id, nil
}

// ParameterRecord is the version record in SSM Parameter Store.
type ParameterRecord struct {
	Client *ssm.Client
	Name   string
}

func (r ParameterRecord) Read(ctx context.Context) (string, error) {
	out, err := r.Client.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(r.Name)})
	if err != nil {
		return "", fmt.Errorf("reading the version record %s: %w", r.Name, err)
	}
	return aws.ToString(out.Parameter.Value), nil
}

func (r ParameterRecord) Write(ctx context.Context, version string) error {
	_, err := r.Client.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(r.Name), Value: aws.String(version),
		Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)})
	return err
}

// Options are `kubeha upgrade`'s: the cluster, the release its stack now
// names, and how to reach it.
type Options struct {
	ClusterName, Target string
	// Kubeconfig is a cluster-admin kubeconfig (the stack's kubeconfig
	// output); Server, if set, is where to reach the API instead
	// (host:port), as kubectl's --server through a tunnel.
	Kubeconfig []byte
	Server     string
	// AWS reaches the cluster's account and region.
	AWS aws.Config
	// DryRun says what the upgrade would do, and changes nothing.
	DryRun bool
	Logf   func(format string, args ...any)
	// NodeTimeout and DrainTimeout: see Upgrade.
	NodeTimeout, DrainTimeout time.Duration
}

// Command runs `kubeha upgrade`: the cluster's own API, instance groups
// and version record (bootstrap.RunningVersionParameter). It returns the
// upgrade, with what it replaced, also when it failed part way.
func Command(ctx context.Context, o Options) (*Upgrade, error) {
	api, err := kubeapi.FromKubeconfig(o.Kubeconfig, o.Server, 30*time.Second)
	if err != nil {
		return nil, err
	}
	u := &Upgrade{Target: o.Target, API: api, Logf: o.Logf, NodeTimeout: o.NodeTimeout, DrainTimeout: o.DrainTimeout,
		Fleet:  GroupFleet{Client: autoscaling.NewFromConfig(o.AWS), LoadBalancing: elb.NewFromConfig(o.AWS), Cluster: o.ClusterName},
		Record: ParameterRecord{Client: ssm.NewFromConfig(o.AWS), Name: bootstrap.RunningVersionParameter(o.ClusterName)}}
	if !o.DryRun {
		return u, u.Run(ctx)
	}
	s, err := u.Read(ctx)
	if err != nil {
		return u, err
	}
	if err := s.Check(o.Target); err != nil {
		return u, err
	}
	steps := s.Steps(o.Target)
	if len(steps) == 0 {
		u.logf("%s runs %s: nothing to do", o.ClusterName, o.Target)
	}
	for i, step := range steps {
		u.logf("%d. %s", i+1, step)
	}
	return u, nil
}
