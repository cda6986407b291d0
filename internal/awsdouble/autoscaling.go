package awsdouble

import (
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

const autoScalingNamespace = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

// Lifecycle states of an instance in an auto-scaling group, as Auto
// Scaling reports them.
const (
	PendingWait     = "Pending:Wait" // launched, its launch hook not completed
	InService       = "InService"
	TerminatingWait = "Terminating:Wait" // leaving, its termination hook not completed
	Terminating     = "Terminating"      // leaving, or its launch hook abandoned
)

// GroupInstance is an instance's place in its auto-scaling group.
type GroupInstance struct {
	// Hook is the lifecycle hook the instance waits on, if any.
	Group, Hook string
	// State is PendingWait, InService, TerminatingWait or Terminating.
	State string
	// Healthy is false once the instance was set Unhealthy.
	Healthy bool
	// Released is whether a CompleteLifecycleAction, not the hook's
	// timeout, let it leave.
	Released bool
	// TemplateVersion is the launch template version it launched from.
	TemplateVersion string
}

// autoScalingGroup is what DescribeAutoScalingGroups tells of a group
// besides its instances.
type autoScalingGroup struct {
	tags                        map[string]string
	templateID, templateVersion string
}

// SetGroup describes group: its tags and the launch template version it
// launches new instances from, which a `pulumi up` that changed the
// template moves; instances keep the version they launched from.
func (c *Cloud) SetGroup(group string, tags map[string]string, templateID, templateVersion string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups[group] = &autoScalingGroup{tags: tags, templateID: templateID, templateVersion: templateVersion}
}

// TargetLifecycleState is what instance id's metadata says its group is
// taking it to: Terminated once it leaves, InService otherwise; "" for an
// instance in no group.
func (c *Cloud) TargetLifecycleState(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.groupInstances[id]
	switch {
	case !ok:
		return ""
	case g.State == TerminatingWait || g.State == Terminating:
		return "Terminated"
	}
	return InService
}

// terminationHook is a group's lifecycle hook on
// autoscaling:EC2_INSTANCE_TERMINATING.
type terminationHook struct {
	name    string
	timeout time.Duration
}

// SetTerminationHook holds every instance leaving group at TerminatingWait
// until someone completes hook, or timeout passes.
func (c *Cloud) SetTerminationHook(group, hook string, timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.terminationHooks[group] = terminationHook{hook, timeout}
}

// TerminateInGroup terminates instance id as its group does when asked
// (TerminateInstanceInAutoScalingGroup, desired capacity kept): through
// the group's termination hook, if it has one, then OnTerminate.
func (c *Cloud) TerminateInGroup(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leave(id) == nil {
		return fmt.Errorf("no auto-scaling group holds instance %s", id)
	}
	return nil
}

// leave starts instance id's way out of its group, nil if no group holds
// it; c.mu is held.
func (c *Cloud) leave(id string) *GroupInstance {
	g, ok := c.groupInstances[id]
	if !ok || g.State == Terminating || g.State == TerminatingWait {
		return g
	}
	h, hooked := c.terminationHooks[g.Group]
	if !hooked {
		c.gone(id, g)
		return g
	}
	g.State, g.Hook = TerminatingWait, h.name
	time.AfterFunc(h.timeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if g.State == TerminatingWait {
			c.gone(id, g)
		}
	})
	return g
}

// gone ends instance id's time in its group; c.mu is held.
func (c *Cloud) gone(id string, g *GroupInstance) {
	g.State = Terminating
	if hook := c.OnTerminate; hook != nil {
		go hook(id)
	}
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
	if g, ok := c.groups[group]; ok {
		c.groupInstances[id].TemplateVersion = g.templateVersion
	}
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
// or a member's group stands, ending a lifecycle hook, marking it
// unhealthy) and those `kubeha upgrade` makes: finding etcd members'
// groups, replacing an instance.
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
	case "DescribeAutoScalingGroups":
		respond(c.describeGroups(r))
	case "CompleteLifecycleAction":
		id := r.Form.Get("InstanceId")
		g, ok := c.groupInstances[id]
		if !ok || (g.State != PendingWait && g.State != TerminatingWait) || g.Group != r.Form.Get("AutoScalingGroupName") || g.Hook != r.Form.Get("LifecycleHookName") {
			fail(apiError{http.StatusBadRequest, "ValidationError", "No active Lifecycle Action found with instance ID " + id})
			return
		}
		switch result := r.Form.Get("LifecycleActionResult"); {
		case result != "CONTINUE" && result != "ABANDON":
			fail(apiError{http.StatusBadRequest, "ValidationError", "LifecycleActionResult must be CONTINUE or ABANDON"})
			return
		case g.State == TerminatingWait:
			// Either result lets a leaving instance go.
			g.Released = true
			c.gone(id, g)
		case result == "CONTINUE":
			g.State = InService
		default:
			g.State = Terminating
		}
		respond(struct {
			XMLName xml.Name `xml:"CompleteLifecycleActionResult"`
		}{})
	case "TerminateInstanceInAutoScalingGroup":
		id := r.Form.Get("InstanceId")
		if r.Form.Get("ShouldDecrementDesiredCapacity") != "false" {
			fail(apiError{http.StatusBadRequest, "ValidationError", "the double keeps every group at its size: ShouldDecrementDesiredCapacity must be false"})
			return
		}
		g := c.leave(id)
		if g == nil {
			fail(apiError{http.StatusBadRequest, "ValidationError", "Instance Id not found - No managed instance found for instance ID " + id})
			return
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

// describeGroups answers DescribeAutoScalingGroups for the groups SetGroup
// described, of those named if any are, that match every filter
// (tag:<key>, tag-key), with their target groups and their
// instances still running, and those a termination hook holds (a dead
// instance stays there until it is let go); c.mu is held.
func (c *Cloud) describeGroups(r *http.Request) any {
	type templateSpec struct {
		LaunchTemplateID string `xml:"LaunchTemplateId"`
		Version          string
	}
	type instance struct {
		InstanceID       string `xml:"InstanceId"`
		AvailabilityZone string
		LifecycleState   string
		HealthStatus     string
		LaunchTemplate   templateSpec
	}
	type tag struct {
		Key, Value, ResourceID, ResourceType string
		PropagateAtLaunch                    bool
	}
	type group struct {
		AutoScalingGroupName              string
		LaunchTemplate                    templateSpec
		MinSize, MaxSize, DesiredCapacity int
		Instances                         []instance `xml:"Instances>member"`
		Tags                              []tag      `xml:"Tags>member"`
		TargetGroupARNs                   []string   `xml:"TargetGroupARNs>member"`
	}
	var names []string
	for i := 1; r.Form.Has(fmt.Sprintf("AutoScalingGroupNames.member.%d", i)); i++ {
		names = append(names, r.Form.Get(fmt.Sprintf("AutoScalingGroupNames.member.%d", i)))
	}
	matches := func(name string, g *autoScalingGroup) bool {
		if len(names) > 0 && !slices.Contains(names, name) {
			return false
		}
		for i := 1; r.Form.Has(fmt.Sprintf("Filters.member.%d.Name", i)); i++ {
			name := r.Form.Get(fmt.Sprintf("Filters.member.%d.Name", i))
			var values []string
			for j := 1; r.Form.Has(fmt.Sprintf("Filters.member.%d.Values.member.%d", i, j)); j++ {
				values = append(values, r.Form.Get(fmt.Sprintf("Filters.member.%d.Values.member.%d", i, j)))
			}
			var ok bool
			if key, isTag := strings.CutPrefix(name, "tag:"); isTag {
				v, has := g.tags[key]
				ok = has && slices.Contains(values, v)
			} else if name == "tag-key" {
				ok = slices.ContainsFunc(values, func(k string) bool { _, has := g.tags[k]; return has })
			}
			if !ok {
				return false
			}
		}
		return true
	}
	var found []group
	for _, name := range slices.Sorted(maps.Keys(c.groups)) {
		g := c.groups[name]
		if !matches(name, g) {
			continue
		}
		out := group{AutoScalingGroupName: name, LaunchTemplate: templateSpec{g.templateID, g.templateVersion}, MinSize: 1, MaxSize: 1, DesiredCapacity: 1,
			TargetGroupARNs: c.targetGroups[name]}
		for _, k := range slices.Sorted(maps.Keys(g.tags)) {
			out.Tags = append(out.Tags, tag{k, g.tags[k], name, "auto-scaling-group", true})
		}
		for _, id := range slices.Sorted(maps.Keys(c.groupInstances)) {
			gi := c.groupInstances[id]
			ec2, running := c.instances[id]
			if gi.Group != name || !running && gi.State != TerminatingWait {
				continue
			}
			health := "Healthy"
			if !gi.Healthy {
				health = "Unhealthy"
			}
			out.Instances = append(out.Instances, instance{id, ec2.Zone, gi.State, health, templateSpec{g.templateID, gi.TemplateVersion}})
		}
		found = append(found, out)
	}
	return struct {
		XMLName xml.Name `xml:"DescribeAutoScalingGroupsResult"`
		Groups  []group  `xml:"AutoScalingGroups>member"`
	}{Groups: found}
}
