package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/kubeha/kubeha/internal/subnets"
)

// Zone counts kubeha accepts: 3 to survive a zone loss, and no AWS region has
// more than 6.
const (
	MinZones = 3
	MaxZones = 6
)

var (
	regionPattern       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	clusterNamePattern  = regexp.MustCompile(`^[a-z][a-z0-9-]{1,26}[a-z0-9]$`)
	poolNamePattern     = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)
	versionPattern      = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	instanceTypePattern = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9]+$`)
	vpcIDPattern        = regexp.MustCompile(`^vpc-[0-9a-f]{8,17}$`)
	subnetIDPattern     = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	dnsNamePattern      = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	hostedZonePattern   = regexp.MustCompile(`^Z[0-9A-Z]{1,31}$`)
	emailPattern        = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

	// RFC 1918, and RFC 6598 shared space which pod and service networks may use.
	rfc1918       = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16")}
	sharedAddress = netip.MustParsePrefix("100.64.0.0/10")
)

// Validate checks every rule a stack must meet before any resource is
// declared. It returns Errors, or nil.
func (s Stack) Validate() error {
	v := &validator{}
	v.required(RegionKey, s.Region, regionPattern, "an AWS region such as us-east-1")
	v.oneOf(key("environment"), s.Environment, Environments)
	v.required(key("clusterName"), s.ClusterName, clusterNamePattern, "3 to 28 of a-z, 0-9 and '-', starting with a letter")
	v.zones(s)
	v.kubernetesVersion(s.KubernetesVersion)
	v.network(s)
	v.api(s)
	v.etcd(s.Etcd)
	v.required(key("controlPlane.instanceType"), s.ControlPlane.InstanceType, instanceTypePattern, "an EC2 instance type such as m6i.large")
	v.leaderElection(s.ControlPlane.LeaderElection)
	v.workers(s.Workers)
	v.oneOf(key("addons.monitoring"), s.Addons.Monitoring, []string{"prometheus", "cloudwatch"})
	if e := s.Addons.AlarmEmail; e != "" && !emailPattern.MatchString(e) {
		v.add(key("addons.alarmEmail"), quote(e), "an e-mail address such as ops@example.com")
	}
	if s.Environment == "prod" && !s.DeletionProtection {
		v.add(key("deletionProtection"), "false", "true in prod")
	}
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

func key(path string) string { return Namespace + ":" + path }

type validator struct{ errs Errors }

func (v *validator) add(key, value, allowed string) {
	v.errs = append(v.errs, &FieldError{Key: key, Value: value, Allowed: allowed})
}

func (v *validator) required(key, value string, pattern *regexp.Regexp, allowed string) {
	if value == "" {
		v.add(key, "not set", allowed)
	} else if !pattern.MatchString(value) {
		v.add(key, quote(value), allowed)
	}
}

func (v *validator) oneOf(key, value string, allowed []string) {
	if !slices.Contains(allowed, value) {
		shown := quote(value)
		if value == "" {
			shown = "not set"
		}
		v.add(key, shown, strings.Join(allowed, ", "))
	}
}

func (v *validator) between(key string, value, lo, hi int) {
	if value < lo || value > hi {
		v.add(key, fmt.Sprint(value), fmt.Sprintf("%d to %d", lo, hi))
	}
}

func (v *validator) zones(s Stack) {
	if len(s.Zones) < MinZones || len(s.Zones) > MaxZones {
		v.add(key("zones"), fmt.Sprintf("%d zones %q", len(s.Zones), s.Zones),
			fmt.Sprintf("%d to %d distinct zones of %s, so the cluster survives the loss of one", MinZones, MaxZones, s.Region))
	}
	seen := map[string]int{}
	for i, zone := range s.Zones {
		k := key(fmt.Sprintf("zones[%d]", i))
		if first, dup := seen[zone]; dup {
			v.add(k, quote(zone), fmt.Sprintf("each zone once; it is already zones[%d]", first))
			continue
		}
		seen[zone] = i
		if s.Region != "" && !isZoneOf(zone, s.Region) {
			v.add(k, quote(zone), fmt.Sprintf("a zone of %s=%s, such as %sa", RegionKey, s.Region, s.Region))
		}
	}
}

// isZoneOf reports whether zone is region plus one letter, like eu-west-1a.
func isZoneOf(zone, region string) bool {
	suffix, ok := strings.CutPrefix(zone, region)
	return ok && len(suffix) == 1 && suffix[0] >= 'a' && suffix[0] <= 'z'
}

func (v *validator) kubernetesVersion(version string) {
	m := versionPattern.FindStringSubmatch(version)
	if m == nil {
		v.add(key("kubernetesVersion"), quote(version), "vMAJOR.MINOR.PATCH such as v1.36.3")
		return
	}
	if minor := m[1] + "." + m[2]; !slices.Contains(SupportedKubernetesMinors, minor) {
		v.add(key("kubernetesVersion"), quote(version), "a patch release of "+strings.Join(SupportedKubernetesMinors, ", "))
	}
}

// cidr parses a canonical IPv4 CIDR, reporting it under key if it is not one.
func (v *validator) cidr(key, value string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(value)
	if err != nil || !p.Addr().Is4() || p.Masked() != p {
		v.add(key, quote(value), "an IPv4 CIDR with no host bits set, such as 10.0.0.0/16")
		return netip.Prefix{}, false
	}
	return p, true
}

func within(p netip.Prefix, ranges ...netip.Prefix) bool {
	for _, r := range ranges {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func (v *validator) network(s Stack) {
	n := s.Network
	type namedPrefix struct {
		key    string
		prefix netip.Prefix
	}
	var ranges []namedPrefix
	if vpc, ok := v.cidr(key("network.vpcCidr"), n.VpcCidr); ok {
		if !within(vpc, rfc1918...) {
			v.add(key("network.vpcCidr"), quote(n.VpcCidr), "a private (RFC 1918) range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
		} else if vpc.Bits() < subnets.MinVPCBits || vpc.Bits() > subnets.MaxVPCBits {
			v.add(key("network.vpcCidr"), quote(n.VpcCidr), fmt.Sprintf("a prefix length from /%d to /%d", subnets.MinVPCBits, subnets.MaxVPCBits))
		} else {
			ranges = append(ranges, namedPrefix{key("network.vpcCidr"), vpc})
		}
	}
	for _, c := range []struct {
		key, value string
		minBits    int
		maxBits    int
	}{
		{key("network.podCidr"), n.PodCidr, 8, 20},
		{key("network.serviceCidr"), n.ServiceCidr, 12, 24},
	} {
		p, ok := v.cidr(c.key, c.value)
		if !ok {
			continue
		}
		switch {
		case !within(p, append(rfc1918, sharedAddress)...):
			v.add(c.key, quote(c.value), "a private range: RFC 1918 or 100.64.0.0/10")
		case p.Bits() < c.minBits || p.Bits() > c.maxBits:
			v.add(c.key, quote(c.value), fmt.Sprintf("a prefix length from /%d to /%d", c.minBits, c.maxBits))
		default:
			ranges = append(ranges, namedPrefix{c.key, p})
		}
	}
	for i, a := range ranges {
		for _, b := range ranges[:i] {
			if a.prefix.Overlaps(b.prefix) {
				v.add(a.key, quote(a.prefix.String()), fmt.Sprintf("a range that does not overlap %s (%s)", b.key, b.prefix))
			}
		}
	}
	if s.Environment == "prod" && n.SharedNatGateway {
		v.add(key("network.sharedNatGateway"), "true", "false in prod: one NAT gateway per zone")
	}
	v.allowlist("network.nodePortCidrs", n.NodePortCidrs, s.Environment)
	v.existingNetwork(s)
}

func (v *validator) existingNetwork(s Stack) {
	n := s.Network
	if n.ExistingVpcID == "" {
		if len(n.ExistingPrivateSubnetIDs)+len(n.ExistingPublicSubnetIDs) > 0 {
			v.add(key("network.existingVpcId"), "not set", "the ID of the VPC that existingPrivateSubnetIds and existingPublicSubnetIds belong to")
		}
		return
	}
	v.required(key("network.existingVpcId"), n.ExistingVpcID, vpcIDPattern, "a VPC ID such as vpc-0123456789abcdef0")
	if n.SharedNatGateway {
		v.add(key("network.sharedNatGateway"), "true", "false with existingVpcId: kubeha creates no NAT gateway in an existing VPC")
	}
	v.subnetIDs("network.existingPrivateSubnetIds", n.ExistingPrivateSubnetIDs, len(s.Zones), true)
	v.subnetIDs("network.existingPublicSubnetIds", n.ExistingPublicSubnetIDs, len(s.Zones), s.API.Public)
}

func (v *validator) subnetIDs(path string, ids []string, zones int, required bool) {
	if len(ids) != zones && (required || len(ids) > 0) {
		v.add(key(path), fmt.Sprintf("%d subnet IDs", len(ids)), fmt.Sprintf("one subnet ID per zone, %d in the order of zones", zones))
	}
	for i, id := range ids {
		v.required(key(fmt.Sprintf("%s[%d]", path, i)), id, subnetIDPattern, "a subnet ID such as subnet-0123456789abcdef0")
	}
}

func (v *validator) api(s Stack) {
	v.healthCheck(s.API.HealthCheck)
	v.between(key("api.deregistrationDelaySeconds"), s.API.DeregistrationDelaySeconds, 0, 3600)
	switch {
	case (s.API.DNSName == "") != (s.API.HostedZoneID == ""):
		v.add(key("api.dnsName"), quote(s.API.DNSName), "set together with api.hostedZoneId, or neither")
	case s.API.DNSName != "" && !dnsNamePattern.MatchString(s.API.DNSName):
		v.add(key("api.dnsName"), quote(s.API.DNSName), "a DNS name such as api.example.com")
	case s.API.HostedZoneID != "" && !hostedZonePattern.MatchString(s.API.HostedZoneID):
		v.add(key("api.hostedZoneId"), quote(s.API.HostedZoneID), "a Route53 hosted zone ID such as Z0123456789ABCDEFGHIJ")
	}
	if s.API.Public && len(s.API.AllowedCidrs) == 0 {
		v.add(key("api.allowedCidrs"), "empty", "at least one CIDR when api.public is true")
	}
	v.allowlist("api.allowedCidrs", s.API.AllowedCidrs, s.Environment)
}

// allowlist checks CIDRs that open a port beyond the VPC: the whole
// internet is refused in prod.
func (v *validator) allowlist(path string, cidrs []string, environment string) {
	for i, c := range cidrs {
		k := key(fmt.Sprintf("%s[%d]", path, i))
		p, ok := v.cidr(k, c)
		if ok && p.Bits() == 0 && environment == "prod" {
			v.add(k, quote(c), "a range narrower than the whole internet in prod")
		}
	}
}

func (v *validator) healthCheck(h HealthCheck) {
	v.between(key("api.healthCheck.intervalSeconds"), h.IntervalSeconds, 5, 300)
	v.between(key("api.healthCheck.healthyThreshold"), h.HealthyThreshold, 2, 10)
	v.between(key("api.healthCheck.unhealthyThreshold"), h.UnhealthyThreshold, 2, 10)
	if h.TimeoutSeconds < 2 || h.TimeoutSeconds > 120 || h.TimeoutSeconds >= h.IntervalSeconds {
		v.add(key("api.healthCheck.timeoutSeconds"), fmt.Sprint(h.TimeoutSeconds), fmt.Sprintf("2 to 120, and less than intervalSeconds (%d)", h.IntervalSeconds))
	}
}

func (v *validator) leaderElection(l LeaderElection) {
	k := func(f string) string { return key("controlPlane.leaderElection." + f) }
	switch {
	case l.RetryPeriodSeconds < 1:
		v.add(k("retryPeriodSeconds"), fmt.Sprint(l.RetryPeriodSeconds), "1 or more")
	case l.RenewDeadlineSeconds <= l.RetryPeriodSeconds:
		v.add(k("renewDeadlineSeconds"), fmt.Sprint(l.RenewDeadlineSeconds), fmt.Sprintf("more than retryPeriodSeconds (%d)", l.RetryPeriodSeconds))
	case l.LeaseDurationSeconds <= l.RenewDeadlineSeconds:
		v.add(k("leaseDurationSeconds"), fmt.Sprint(l.LeaseDurationSeconds), fmt.Sprintf("more than renewDeadlineSeconds (%d)", l.RenewDeadlineSeconds))
	case l.LeaseDurationSeconds > 300:
		v.add(k("leaseDurationSeconds"), fmt.Sprint(l.LeaseDurationSeconds), "at most 300")
	}
}

func (v *validator) etcd(e Etcd) {
	switch {
	case e.Members%2 == 0:
		v.add(key("etcd.members"), fmt.Sprint(e.Members), "3 or 5: an even count tolerates no more failures than the odd count below it")
	case e.Members != 3 && e.Members != 5:
		v.add(key("etcd.members"), fmt.Sprint(e.Members), "3 or 5")
	}
	v.required(key("etcd.instanceType"), e.InstanceType, instanceTypePattern, "an EC2 instance type such as m6i.large")
	v.between(key("etcd.volumeSizeGiB"), e.VolumeSizeGiB, 8, 1024)
	v.between(key("etcd.backupIntervalMinutes"), e.BackupIntervalMinutes, 5, 1440)
	v.between(key("etcd.backupRetentionDays"), e.BackupRetentionDays, 1, 3650)
}

func (v *validator) workers(pools []WorkerPool) {
	if len(pools) == 0 {
		v.add(key("workers"), "empty", "at least one worker pool")
	}
	seen := map[string]int{}
	for i, p := range pools {
		at := func(field string) string { return key(fmt.Sprintf("workers[%d].%s", i, field)) }
		v.required(at("name"), p.Name, poolNamePattern, "1 to 20 of a-z, 0-9 and '-', starting with a letter")
		if first, dup := seen[p.Name]; dup {
			v.add(at("name"), quote(p.Name), fmt.Sprintf("a name not used by workers[%d]", first))
		}
		seen[p.Name] = i
		if len(p.InstanceTypes) == 0 || len(p.InstanceTypes) > 10 {
			v.add(at("instanceTypes"), fmt.Sprintf("%d types", len(p.InstanceTypes)), "1 to 10 EC2 instance types")
		}
		for j, t := range p.InstanceTypes {
			v.required(at(fmt.Sprintf("instanceTypes[%d]", j)), t, instanceTypePattern, "an EC2 instance type such as m6i.large")
		}
		v.between(at("spotPercent"), p.SpotPercent, 0, 100)
		v.between(at("onDemandBase"), p.OnDemandBase, 0, 100)
		for j, label := range p.Labels {
			if _, _, err := ParseLabel(label); err != nil {
				v.add(at(fmt.Sprintf("labels[%d]", j)), quote(label), err.Error())
			}
		}
		for j, taint := range p.Taints {
			if _, _, _, err := ParseTaint(taint); err != nil {
				v.add(at(fmt.Sprintf("taints[%d]", j)), quote(taint), err.Error())
			}
		}
		v.between(at("maxPerZone"), p.MaxPerZone, 1, 100)
		switch {
		case p.MinPerZone < 0:
			v.add(at("minPerZone"), fmt.Sprint(p.MinPerZone), "0 or more")
		case p.MinPerZone > p.MaxPerZone:
			v.add(at("minPerZone"), fmt.Sprint(p.MinPerZone), fmt.Sprintf("at most maxPerZone (%d)", p.MaxPerZone))
		case p.DesiredPerZone < p.MinPerZone || p.DesiredPerZone > p.MaxPerZone:
			v.add(at("desiredPerZone"), fmt.Sprint(p.DesiredPerZone), fmt.Sprintf("from minPerZone (%d) to maxPerZone (%d)", p.MinPerZone, p.MaxPerZone))
		}
	}
}

var (
	labelNamePattern   = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$`)
	labelPrefixPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	taintEffects       = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
)

// ParseLabel splits a node label "key=value" and checks it as Kubernetes
// and the kubelet do.
func ParseLabel(label string) (key, value string, err error) {
	key, value, found := strings.Cut(label, "=")
	if !found {
		return "", "", fmt.Errorf("key=value")
	}
	if err := checkKeySyntax(key); err != nil {
		return "", "", err
	}
	if prefix, _, _ := strings.Cut(key, "/"); strings.Contains(key, "/") && reservedLabelPrefix(prefix) {
		return "", "", fmt.Errorf("a key outside the kubernetes.io and k8s.io namespaces (the kubelet may not set %s/ labels), or in node.kubernetes.io/", prefix)
	}
	if value != "" && !labelNamePattern.MatchString(value) {
		return "", "", fmt.Errorf("a value of at most 63 of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending alphanumeric")
	}
	return key, value, nil
}

// ParseTaint splits a taint "key=value:Effect" or "key:Effect".
func ParseTaint(taint string) (key, value, effect string, err error) {
	rest, effect, found := strings.Cut(taint, ":")
	if !found || !slices.Contains(taintEffects, effect) {
		return "", "", "", fmt.Errorf("key=value:Effect with Effect one of %s", strings.Join(taintEffects, ", "))
	}
	key, value, _ = strings.Cut(rest, "=")
	if err := checkKeySyntax(key); err != nil {
		return "", "", "", err
	}
	if value != "" && !labelNamePattern.MatchString(value) {
		return "", "", "", fmt.Errorf("a value of at most 63 of A-Z, a-z, 0-9, '-', '_' and '.'")
	}
	return key, value, effect, nil
}

// checkKeySyntax: [prefix/]name, as Kubernetes label and taint keys are.
func checkKeySyntax(key string) error {
	prefix, name, hasPrefix := strings.Cut(key, "/")
	if !hasPrefix {
		prefix, name = "", key
	}
	if !labelNamePattern.MatchString(name) || (hasPrefix && (len(prefix) > 253 || !labelPrefixPattern.MatchString(prefix))) {
		return fmt.Errorf("a key [prefix/]name: a DNS prefix, and a name of at most 63 of A-Z, a-z, 0-9, '-', '_' and '.'")
	}
	return nil
}

// reservedLabelPrefix: the kubelet may not label its node in the
// Kubernetes namespaces, but for node.kubernetes.io and kubelet.kubernetes.io.
func reservedLabelPrefix(prefix string) bool {
	reserved := prefix == "kubernetes.io" || prefix == "k8s.io" || strings.HasSuffix(prefix, ".kubernetes.io") || strings.HasSuffix(prefix, ".k8s.io")
	return reserved && prefix != "node.kubernetes.io" && prefix != "kubelet.kubernetes.io"
}
