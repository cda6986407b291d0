package config

import "fmt"

// Finding is a valid setting that gives up high availability, shown by the
// plan and logged by `pulumi up` so that nobody runs it by accident.
type Finding struct {
	Key     string
	Setting string
	Effect  string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s=%s: %s", f.Key, f.Setting, f.Effect)
}

// NotHA lists the settings of s that do not survive the loss of a zone.
func (s Stack) NotHA() []Finding {
	var findings []Finding
	if s.Network.SharedNatGateway && s.Network.ExistingVpcID == "" {
		zone := "the first zone"
		if len(s.Zones) > 0 {
			zone = s.Zones[0]
		}
		findings = append(findings, Finding{key("network.sharedNatGateway"), "true",
			"one NAT gateway, in " + zone + "; if that zone fails, nodes in every other zone lose outbound internet (image pulls, AWS APIs without endpoints)"})
	}
	keepsWorkers := false
	for _, p := range s.Workers {
		keepsWorkers = keepsWorkers || p.MinPerZone > 0
	}
	if !keepsWorkers {
		findings = append(findings, Finding{key("workers[*].minPerZone"), "0",
			"no pool keeps a worker in every zone; workloads wait for the autoscaler after a zone loss"})
	}
	return findings
}
