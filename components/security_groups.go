package components

// Every security group kubeha makes, and every rule of each group in one
// function: a reader checks what may reach a role here and nowhere else.
// Groups admit other groups, never a CIDR, except the load balancer's
// client allowlist and the workers' NodePorts.

import (
	"cmp"
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
)

// Ports between nodes besides the API and etcd.
const (
	kubeletPort           = bootstrap.KubeletPort
	nodeExporterPort      = 9100
	controllerManagerPort = bootstrap.ControllerManagerPort
	schedulerPort         = bootstrap.SchedulerPort
	// The CNI: VXLAN (UDP, either plugin) and Cilium's health.
	cniOverlayPort = addons.CNIOverlayPort
	cniHealthPort  = 4240
	nodePortFirst  = 30000
	nodePortLast   = 32767
)

// newSecurityGroup makes an empty group in the VPC; its rules come from
// the group's function below.
func newSecurityGroup(ctx *pulumi.Context, name string, vpcID pulumi.StringInput, description string, tags pulumi.StringMap, opts []pulumi.ResourceOption) (*ec2.SecurityGroup, error) {
	return ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{VpcId: vpcID, Description: pulumi.String(description), Tags: tags}, opts...)
}

// etcdMemberRules: 2379 from clients (control-plane nodes) and members,
// 2380 between members only, the TLS metrics port from the scraper
// (Prometheus' nodes) if there is one; out to AWS APIs, S3 and downloads.
func etcdMemberRules(ctx *pulumi.Context, name string, members, clients, scraper pulumi.StringInput, opts []pulumi.ResourceOption) error {
	rules := []groupRule{
		{Name: "client-from-control-plane", Port: bootstrap.EtcdClientPort, From: clients},
		{Name: "client-from-members", Port: bootstrap.EtcdClientPort, From: members},
		{Name: "peer-from-members", Port: bootstrap.EtcdPeerPort, From: members},
	}
	if scraper != nil {
		rules = append(rules, groupRule{Name: "etcd-metrics-from-prometheus", Port: bootstrap.EtcdTLSMetricsPort, From: scraper})
	}
	if err := allowFromGroups(ctx, name, members, rules, opts); err != nil {
		return err
	}
	return egressAnywhere(ctx, name, members, opts)
}

// loadBalancerRules: 6443 from each client source (the VPC, the
// allowlist, the nodes' egress addresses), and out to the API servers
// only, for traffic and health checks.
func loadBalancerRules(ctx *pulumi.Context, name string, group, vpcCidr pulumi.StringInput, sources []pulumi.StringInput, opts []pulumi.ResourceOption) error {
	if err := allowFromCidrs(ctx, name+"-clients", group, sources, APIPort, APIPort, "Kubernetes API clients", opts); err != nil {
		return err
	}
	_, err := vpc.NewSecurityGroupEgressRule(ctx, name+"-to-api-servers", &vpc.SecurityGroupEgressRuleArgs{
		SecurityGroupId: group, CidrIpv4: vpcCidr, IpProtocol: pulumi.String("tcp"),
		FromPort: pulumi.Int(APIPort), ToPort: pulumi.Int(APIPort),
	}, opts...)
	return err
}

// controlPlaneRules: the API from the load balancer (which holds the
// client allowlist), the other control-plane nodes and workers (pods use
// the kubernetes Service, not the load balancer); the kubelet from the
// control plane; the CNI's ports from workers; scrapes from the scraper.
// workers and scraper may be nil (a control plane on its own).
func controlPlaneRules(ctx *pulumi.Context, name string, group, loadBalancer pulumi.StringInput, tunnel bool, workers, scraper pulumi.StringInput, opts []pulumi.ResourceOption) error {
	rules := []groupRule{
		{Name: "api-from-load-balancer", Port: bootstrap.APIServerPort, From: loadBalancer},
		{Name: "api-from-control-plane", Port: bootstrap.APIServerPort, From: group},
		{Name: "kubelet-from-control-plane", Port: kubeletPort, From: group},
	}
	if tunnel {
		// The Instance Connect Endpoint wears the load balancer's group.
		rules = append(rules, groupRule{Name: "api-tunnel-from-access-endpoint", Port: bootstrap.APITunnelPort, From: loadBalancer})
	}
	if workers != nil {
		rules = append(rules,
			groupRule{Name: "api-from-workers", Port: bootstrap.APIServerPort, From: workers},
			groupRule{Name: "cni-overlay-from-workers", Port: cniOverlayPort, From: workers, Protocol: "udp"},
			groupRule{Name: "cni-health-from-workers", Port: cniHealthPort, From: workers})
	}
	if scraper != nil {
		rules = append(rules, scrapes(scraper, kubeletPort, nodeExporterPort, controllerManagerPort, schedulerPort)...)
	}
	if err := allowFromGroups(ctx, name, group, rules, opts); err != nil {
		return err
	}
	return egressAnywhere(ctx, name, group, opts)
}

// workerRules: the kubelet from the control plane, the CNI's ports
// between all nodes, NodePorts from the VPC and nodePortCidrs, scrapes
// from the scraper (nil without Prometheus).
func workerRules(ctx *pulumi.Context, name string, group, controlPlane, scraper, vpcCidr pulumi.StringInput, nodePortCidrs []string, opts []pulumi.ResourceOption) error {
	rules := []groupRule{
		{Name: "kubelet-from-control-plane", Port: kubeletPort, From: controlPlane},
		{Name: "cni-overlay-from-workers", Port: cniOverlayPort, From: group, Protocol: "udp"},
		{Name: "cni-overlay-from-control-plane", Port: cniOverlayPort, From: controlPlane, Protocol: "udp"},
		{Name: "cni-health-from-workers", Port: cniHealthPort, From: group},
		{Name: "cni-health-from-control-plane", Port: cniHealthPort, From: controlPlane},
	}
	if scraper != nil {
		rules = append(rules, scrapes(scraper, kubeletPort, nodeExporterPort)...)
	}
	if err := allowFromGroups(ctx, name, group, rules, opts); err != nil {
		return err
	}
	sources := append([]pulumi.StringInput{vpcCidr}, pulumi.ToStringArray(nodePortCidrs)...)
	if err := allowFromCidrs(ctx, name+"-nodeports", group, sources, nodePortFirst, nodePortLast, "NodePorts", opts); err != nil {
		return err
	}
	return egressAnywhere(ctx, name, group, opts)
}

// scrapes are Prometheus' rules for the given ports. Each target still
// authenticates the scraper.
func scrapes(scraper pulumi.StringInput, ports ...int) []groupRule {
	names := map[int]string{kubeletPort: "kubelet", nodeExporterPort: "node-exporter",
		controllerManagerPort: "controller-manager", schedulerPort: "scheduler"}
	var rules []groupRule
	for _, port := range ports {
		rules = append(rules, groupRule{Name: names[port] + "-from-prometheus", Port: port, From: scraper})
	}
	return rules
}

// egressAnywhere: nodes reach AWS APIs, S3, package mirrors and each other.
func egressAnywhere(ctx *pulumi.Context, name string, group pulumi.StringInput, opts []pulumi.ResourceOption) error {
	_, err := vpc.NewSecurityGroupEgressRule(ctx, name+"-egress", &vpc.SecurityGroupEgressRuleArgs{
		SecurityGroupId: group, IpProtocol: pulumi.String("-1"), CidrIpv4: pulumi.String("0.0.0.0/0"),
	}, opts...)
	return err
}

// allowFromCidrs admits TCP ports from to to from each source CIDR, one
// rule each, named prefix-0, prefix-1, ...
func allowFromCidrs(ctx *pulumi.Context, prefix string, group pulumi.StringInput, sources []pulumi.StringInput, from, to int, description string, opts []pulumi.ResourceOption) error {
	for i, source := range sources {
		if _, err := vpc.NewSecurityGroupIngressRule(ctx, fmt.Sprintf("%s-%d", prefix, i), &vpc.SecurityGroupIngressRuleArgs{
			SecurityGroupId: group, CidrIpv4: source, IpProtocol: pulumi.String("tcp"),
			FromPort: pulumi.Int(from), ToPort: pulumi.Int(to), Description: pulumi.String(description),
		}, opts...); err != nil {
			return err
		}
	}
	return nil
}

// groupRule admits a port (TCP unless Protocol says udp) from the
// security group From.
type groupRule struct {
	Name     string
	Port     int
	From     pulumi.StringInput
	Protocol string
}

// allowFromGroups adds ingress rules to a security group that name other
// groups only, never a CIDR.
func allowFromGroups(ctx *pulumi.Context, prefix string, group pulumi.StringInput, rules []groupRule, opts []pulumi.ResourceOption) error {
	for _, rule := range rules {
		if _, err := vpc.NewSecurityGroupIngressRule(ctx, prefix+"-"+rule.Name, &vpc.SecurityGroupIngressRuleArgs{
			SecurityGroupId: group, ReferencedSecurityGroupId: rule.From, IpProtocol: pulumi.String(cmp.Or(rule.Protocol, "tcp")),
			FromPort: pulumi.Int(rule.Port), ToPort: pulumi.Int(rule.Port), Description: pulumi.String(rule.Name),
		}, opts...); err != nil {
			return err
		}
	}
	return nil
}
