package awsdouble

import (
	"encoding/xml"
	"net/http"
	"slices"
)

const loadBalancingNamespace = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"

// SetTargetGroups registers group's instances in the target groups arns,
// as an auto-scaling group's TargetGroupARNs do: DescribeAutoScalingGroups
// lists them, and DescribeTargetHealth answers for them.
func (c *Cloud) SetTargetGroups(group string, arns ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.targetGroups[group] = slices.Clone(arns)
}

// serveLoadBalancing answers DescribeTargetHealth for one instance of a
// target group SetTargetGroups named, with TargetHealth's state.
func (c *Cloud) serveLoadBalancing(w http.ResponseWriter, r *http.Request, action string) {
	fail := func(e apiError) { writeQueryError(w, loadBalancingNamespace, e) }
	if action != "DescribeTargetHealth" {
		fail(apiError{http.StatusBadRequest, "InvalidAction", "Could not find operation " + action + " for version 2015-12-01"})
		return
	}
	arn, id := r.Form.Get("TargetGroupArn"), r.Form.Get("Targets.member.1.Id")
	c.mu.Lock()
	known := false
	for _, arns := range c.targetGroups {
		known = known || slices.Contains(arns, arn)
	}
	health := c.TargetHealth
	c.mu.Unlock()
	switch {
	case !known:
		fail(apiError{http.StatusBadRequest, "TargetGroupNotFound", "Target groups '" + arn + "' not found"})
		return
	case id == "":
		fail(apiError{http.StatusBadRequest, "ValidationError", "the double answers for one target: Targets.member.1.Id is required"})
		return
	}
	state := "unavailable"
	if health != nil {
		state = health(arn, id)
	}
	type target struct {
		ID    string `xml:"Target>Id"`
		State string `xml:"TargetHealth>State"`
	}
	writeXML(w, http.StatusOK, struct {
		XMLName   xml.Name
		Targets   []target `xml:"DescribeTargetHealthResult>TargetHealthDescriptions>member"`
		RequestID string   `xml:"ResponseMetadata>RequestId"`
	}{XMLName: xml.Name{Space: loadBalancingNamespace, Local: action + "Response"}, Targets: []target{{id, state}}, RequestID: requestID()})
}
