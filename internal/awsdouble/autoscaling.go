package awsdouble

import (
	"encoding/xml"
	"fmt"
	"net/http"
)

const autoScalingNamespace = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

// Lifecycle states of an instance in an auto-scaling group, as Auto
// Scaling reports them.
const (
	PendingWait = "Pending:Wait" // launched, its launch hook not completed
	InService   = "InService"
	Terminating = "Terminating" // its launch hook abandoned
)

// GroupInstance is an instance's place in its auto-scaling group.
type GroupInstance struct {
	Group, Hook string
	// State is PendingWait, InService or Terminating.
	State string
	// Healthy is false once the instance was set Unhealthy.
	Healthy bool
}

// JoinGroup puts instance id in group, held at PendingWait by the launch
// hook named hook until someone completes it; with no hook it is InService
// at once.
func (c *Cloud) JoinGroup(id, group, hook string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	state := InService
	if hook != "" {
		state = PendingWait
	}
	c.groupInstances[id] = &GroupInstance{Group: group, Hook: hook, State: state, Healthy: true}
}

// GroupInstance is where instance id stands in its group.
func (c *Cloud) GroupInstance(id string) (GroupInstance, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.groupInstances[id]
	if !ok {
		return GroupInstance{}, false
	}
	return *g, true
}

// serveAutoScaling answers the calls node scripts make (where an instance
// stands, ending its launch hook, marking it unhealthy) and the one
// `kubeha upgrade` makes: replacing an instance.
func (c *Cloud) serveAutoScaling(w http.ResponseWriter, r *http.Request, action string) {
	fail := func(e apiError) { writeQueryError(w, autoScalingNamespace, e) }
	respond := func(result any) {
		writeXML(w, http.StatusOK, struct {
			XMLName   xml.Name
			Result    any    `xml:",omitempty"`
			RequestID string `xml:"ResponseMetadata>RequestId"`
		}{XMLName: xml.Name{Space: autoScalingNamespace, Local: action + "Response"}, Result: result, RequestID: requestID()})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch action {
	case "DescribeAutoScalingInstances":
		type member struct {
			InstanceID           string `xml:"InstanceId"`
			AutoScalingGroupName string
			AvailabilityZone     string
			LifecycleState       string
			HealthStatus         string
		}
		var found []member
		for i := 1; r.Form.Has(fmt.Sprintf("InstanceIds.member.%d", i)); i++ {
			id := r.Form.Get(fmt.Sprintf("InstanceIds.member.%d", i))
			if g, ok := c.groupInstances[id]; ok {
				health := "HEALTHY"
				if !g.Healthy {
					health = "UNHEALTHY"
				}
				found = append(found, member{id, g.Group, c.instances[id].Zone, g.State, health})
			}
		}
		respond(struct {
			XMLName   xml.Name `xml:"DescribeAutoScalingInstancesResult"`
			Instances []member `xml:"AutoScalingInstances>member"`
		}{Instances: found})
	case "CompleteLifecycleAction":
		g, ok := c.groupInstances[r.Form.Get("InstanceId")]
		if !ok || g.State != PendingWait || g.Group != r.Form.Get("AutoScalingGroupName") || g.Hook != r.Form.Get("LifecycleHookName") {
			fail(apiError{http.StatusBadRequest, "ValidationError", "No active Lifecycle Action found with instance ID " + r.Form.Get("InstanceId")})
			return
		}
		switch r.Form.Get("LifecycleActionResult") {
		case "CONTINUE":
			g.State = InService
		case "ABANDON":
			g.State = Terminating
		default:
			fail(apiError{http.StatusBadRequest, "ValidationError", "LifecycleActionResult must be CONTINUE or ABANDON"})
			return
		}
		respond(struct {
			XMLName xml.Name `xml:"CompleteLifecycleActionResult"`
		}{})
	case "TerminateInstanceInAutoScalingGroup":
		id := r.Form.Get("InstanceId")
		g, ok := c.groupInstances[id]
		switch {
		case !ok:
			fail(apiError{http.StatusBadRequest, "ValidationError", "Instance Id not found - No managed instance found for instance ID " + id})
			return
		case r.Form.Get("ShouldDecrementDesiredCapacity") != "false":
			fail(apiError{http.StatusBadRequest, "ValidationError", "the double keeps every group at its size: ShouldDecrementDesiredCapacity must be false"})
			return
		}
		if g.State != Terminating {
			g.State = Terminating
			if hook := c.OnTerminate; hook != nil {
				go hook(id)
			}
		}
		respond(struct {
			XMLName     xml.Name `xml:"TerminateInstanceInAutoScalingGroupResult"`
			ActivityID  string   `xml:"Activity>ActivityId"`
			GroupName   string   `xml:"Activity>AutoScalingGroupName"`
			Description string   `xml:"Activity>Description"`
			StatusCode  string   `xml:"Activity>StatusCode"`
		}{ActivityID: requestID(), GroupName: g.Group, Description: "Terminating EC2 instance: " + id, StatusCode: "InProgress"})
	case "SetInstanceHealth":
		g, ok := c.groupInstances[r.Form.Get("InstanceId")]
		if !ok {
			fail(apiError{http.StatusBadRequest, "ValidationError", "Instance Id not found - No managed instance found for instance ID " + r.Form.Get("InstanceId")})
			return
		}
		switch r.Form.Get("HealthStatus") {
		case "Healthy":
			g.Healthy = true
		case "Unhealthy":
			g.Healthy = false
		default:
			fail(apiError{http.StatusBadRequest, "ValidationError", "HealthStatus must be Healthy or Unhealthy"})
			return
		}
		respond(nil)
	default:
		fail(apiError{http.StatusBadRequest, "InvalidAction", "Could not find operation " + action + " for version 2011-01-01"})
	}
}

func writeAutoScalingError(w http.ResponseWriter, _ *http.Request, e apiError) {
	writeQueryError(w, autoScalingNamespace, e)
}
