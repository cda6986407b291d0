package awsdouble

import (
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// Attachment states, as EC2 reports them.
const (
	Attaching = "attaching"
	Attached  = "attached"
	Detaching = "detaching"
)

// Volume is an EBS volume.
type Volume struct {
	ID, Zone string
	SizeGiB  int
	// Attachment is where the volume is attached, or nil.
	Attachment *Attachment
}

// Attachment is a volume's attachment to an instance.
type Attachment struct {
	InstanceID, Device string
	// State is Attaching, Attached or Detaching.
	State string
	Time  time.Time
}

// AddVolume adds v to the account, or replaces the volume of that ID.
func (c *Cloud) AddVolume(v Volume) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.volumes[v.ID] = v.copy()
}

// Volume is the state of volume id.
func (c *Cloud) Volume(id string) (Volume, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.volumes[id]
	if !ok {
		return Volume{}, false
	}
	return *v.copy(), true
}

func (v Volume) copy() *Volume {
	if v.Attachment != nil {
		a := *v.Attachment
		v.Attachment = &a
	}
	return &v
}

// AddInstance adds a running instance, whose Zone decides which volumes
// it can attach.
func (c *Cloud) AddInstance(i Instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.instances[i.ID] = i
}

// TerminateInstance removes an instance; its volumes become available, and
// OnDetach is called for each.
func (c *Cloud) TerminateInstance(id string) {
	c.mu.Lock()
	delete(c.instances, id)
	var freed []string
	for _, v := range c.volumes {
		if v.Attachment != nil && v.Attachment.InstanceID == id {
			v.Attachment = nil
			freed = append(freed, v.ID)
		}
	}
	c.mu.Unlock()
	for _, volume := range freed {
		c.detached(volume, id)
	}
}

// ForceAttachment attaches a volume to an instance at once, without
// OnAttach, as if it were still held by an instance being replaced. The
// instance need not exist.
func (c *Cloud) ForceAttachment(volumeID, instanceID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.volumes[volumeID]
	if !ok {
		return fmt.Errorf("awsdouble: no volume %s", volumeID)
	}
	v.Attachment = &Attachment{InstanceID: instanceID, Device: "/dev/xvdf", State: Attached, Time: time.Now()}
	return nil
}

func (c *Cloud) serveEC2(w http.ResponseWriter, r *http.Request, action string) {
	var (
		resp any
		err  *apiError
	)
	switch action {
	case "DescribeVolumes":
		resp, err = c.describeVolumes(r)
	case "AttachVolume":
		resp, err = c.attachVolume(r)
	case "DetachVolume":
		resp, err = c.detachVolume(r)
	case "DescribeInstances":
		resp, err = c.describeInstances(r)
	default:
		err = &apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("The action %s is not valid for this web service.", action)}
	}
	if err != nil {
		writeEC2Error(w, r, *err)
		return
	}
	writeXML(w, http.StatusOK, resp)
}

type ec2Volume struct {
	VolumeID    string          `xml:"volumeId"`
	Size        int             `xml:"size"`
	Zone        string          `xml:"availabilityZone"`
	Status      string          `xml:"status"`
	Attachments []ec2Attachment `xml:"attachmentSet>item"`
	VolumeType  string          `xml:"volumeType"`
}

type ec2Attachment struct {
	XMLName    xml.Name
	RequestID  string `xml:"requestId,omitempty"`
	VolumeID   string `xml:"volumeId"`
	InstanceID string `xml:"instanceId"`
	Device     string `xml:"device"`
	Status     string `xml:"status"`
	AttachTime string `xml:"attachTime"`
}

func (a *Attachment) wire(volumeID string) ec2Attachment {
	return ec2Attachment{VolumeID: volumeID, InstanceID: a.InstanceID, Device: a.Device, Status: a.State,
		AttachTime: a.Time.UTC().Format("2006-01-02T15:04:05.000Z")}
}

func (c *Cloud) describeVolumes(r *http.Request) (any, *apiError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := indexed(r, "VolumeId")
	if len(ids) == 0 {
		for id := range c.volumes {
			ids = append(ids, id)
		}
		sort.Strings(ids)
	}
	resp := struct {
		XMLName   xml.Name    `xml:"DescribeVolumesResponse"`
		Namespace string      `xml:"xmlns,attr"`
		RequestID string      `xml:"requestId"`
		Volumes   []ec2Volume `xml:"volumeSet>item"`
	}{Namespace: ec2Namespace, RequestID: requestID()}
	for _, id := range ids {
		v, ok := c.volumes[id]
		if !ok {
			return nil, volumeNotFound(id)
		}
		wire := ec2Volume{VolumeID: v.ID, Size: v.SizeGiB, Zone: v.Zone, Status: "available", VolumeType: "gp3"}
		if v.Attachment != nil {
			wire.Status = "in-use"
			wire.Attachments = []ec2Attachment{v.Attachment.wire(v.ID)}
		}
		resp.Volumes = append(resp.Volumes, wire)
	}
	return resp, nil
}

type ec2Instance struct {
	ID      string   `xml:"instanceId"`
	DNSName string   `xml:"privateDnsName"`
	IP      string   `xml:"privateIpAddress"`
	State   string   `xml:"instanceState>name"`
	Zone    string   `xml:"placement>availabilityZone"`
	Tags    []ec2Tag `xml:"tagSet>item"`
}

type ec2Tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

// describeInstances answers with the running instances that pass every
// filter; it knows the filters kubeha's nodes use, and refuses others so
// that a script relying on one it ignores fails here first.
func (c *Cloud) describeInstances(r *http.Request) (any, *apiError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	type filter struct {
		name   string
		values []string
	}
	var filters []filter
	for i := 1; r.Form.Has(fmt.Sprintf("Filter.%d.Name", i)); i++ {
		f := filter{r.Form.Get(fmt.Sprintf("Filter.%d.Name", i)), indexed(r, fmt.Sprintf("Filter.%d.Value", i))}
		if !slices.Contains([]string{"private-dns-name", "instance-id", "instance-state-name"}, f.name) && !strings.HasPrefix(f.name, "tag:") {
			return nil, &apiError{http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("The filter '%s' is invalid", f.name)}
		}
		filters = append(filters, f)
	}
	ids := indexed(r, "InstanceId")
	if len(ids) == 0 {
		for id := range c.instances {
			ids = append(ids, id)
		}
		sort.Strings(ids)
	}
	var found []ec2Instance
	for _, id := range ids {
		i, ok := c.instances[id]
		if !ok {
			return nil, &apiError{http.StatusBadRequest, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", id)}
		}
		wire := ec2Instance{ID: i.ID, DNSName: i.Hostname, IP: i.PrivateIP, State: "running", Zone: i.Zone}
		for _, k := range slices.Sorted(maps.Keys(i.Tags)) {
			wire.Tags = append(wire.Tags, ec2Tag{k, i.Tags[k]})
		}
		passes := true
		for _, f := range filters {
			var value string
			switch {
			case f.name == "private-dns-name":
				value = wire.DNSName
			case f.name == "instance-id":
				value = wire.ID
			case f.name == "instance-state-name":
				value = wire.State
			default:
				v, ok := i.Tags[strings.TrimPrefix(f.name, "tag:")]
				if !ok {
					passes = false
				}
				value = v
			}
			passes = passes && slices.Contains(f.values, value)
		}
		if passes {
			found = append(found, wire)
		}
	}
	// One reservation per instance, as an auto-scaling group launches them.
	type reservation struct {
		Instances []ec2Instance `xml:"instancesSet>item"`
	}
	resp := struct {
		XMLName      xml.Name      `xml:"DescribeInstancesResponse"`
		Namespace    string        `xml:"xmlns,attr"`
		RequestID    string        `xml:"requestId"`
		Reservations []reservation `xml:"reservationSet>item"`
	}{Namespace: ec2Namespace, RequestID: requestID()}
	for _, i := range found {
		resp.Reservations = append(resp.Reservations, reservation{[]ec2Instance{i}})
	}
	return resp, nil
}

func (c *Cloud) attachVolume(r *http.Request) (any, *apiError) {
	volumeID, instanceID, device := r.Form.Get("VolumeId"), r.Form.Get("InstanceId"), r.Form.Get("Device")
	if err := required(r, "VolumeId", "InstanceId", "Device"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.volumes[volumeID]
	if !ok {
		return nil, volumeNotFound(volumeID)
	}
	instance, ok := c.instances[instanceID]
	switch {
	case !ok:
		return nil, &apiError{http.StatusBadRequest, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", instanceID)}
	case v.Attachment != nil:
		return nil, &apiError{http.StatusBadRequest, "VolumeInUse", fmt.Sprintf("%s is already attached to an instance", volumeID)}
	case instance.Zone != v.Zone:
		return nil, &apiError{http.StatusBadRequest, "InvalidVolume.ZoneMismatch",
			fmt.Sprintf("The volume '%s' is not in the same availability zone as instance '%s'", volumeID, instanceID)}
	}
	a := &Attachment{InstanceID: instanceID, Device: device, State: Attaching, Time: time.Now()}
	v.Attachment = a
	time.AfterFunc(c.AttachDelay, func() { c.completeAttach(v, a) })
	return c.attachmentResponse("AttachVolumeResponse", v.ID, a), nil
}

// completeAttach marks an attachment attached once OnAttach has made its
// device, unless the volume was detached or reattached meanwhile.
func (c *Cloud) completeAttach(v *Volume, a *Attachment) {
	if !c.pending(v, a, Attaching) {
		return
	}
	if c.OnAttach != nil {
		if err := c.OnAttach(v.ID, a.InstanceID, a.Device); err != nil {
			c.logf("awsdouble: attaching %s to %s: %v; it stays %s", v.ID, a.InstanceID, err, Attaching)
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v.Attachment == a && a.State == Attaching {
		a.State = Attached
	}
}

// pending is whether a is still v's attachment, in state.
func (c *Cloud) pending(v *Volume, a *Attachment, state string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return v.Attachment == a && a.State == state
}

func (c *Cloud) detachVolume(r *http.Request) (any, *apiError) {
	volumeID, instanceID := r.Form.Get("VolumeId"), r.Form.Get("InstanceId")
	if err := required(r, "VolumeId"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.volumes[volumeID]
	switch {
	case !ok:
		return nil, volumeNotFound(volumeID)
	case v.Attachment == nil:
		return nil, &apiError{http.StatusBadRequest, "IncorrectState", fmt.Sprintf("Volume '%s' is in the 'available' state.", volumeID)}
	case instanceID != "" && instanceID != v.Attachment.InstanceID:
		return nil, &apiError{http.StatusBadRequest, "InvalidAttachment.NotFound",
			fmt.Sprintf("Volume '%s' can not be detached from '%s' because it is not attached to it", volumeID, instanceID)}
	}
	// Force only matters to a stuck instance, which the double has not.
	a := v.Attachment
	if a.State != Detaching {
		a.State = Detaching
		time.AfterFunc(c.AttachDelay, func() { c.completeDetach(v, a) })
	}
	return c.attachmentResponse("DetachVolumeResponse", v.ID, a), nil
}

func (c *Cloud) completeDetach(v *Volume, a *Attachment) {
	c.mu.Lock()
	if v.Attachment != a || a.State != Detaching {
		c.mu.Unlock()
		return
	}
	v.Attachment = nil
	c.mu.Unlock()
	c.detached(v.ID, a.InstanceID)
}

func (c *Cloud) detached(volumeID, instanceID string) {
	if c.OnDetach != nil {
		c.OnDetach(volumeID, instanceID)
	}
}

func (c *Cloud) attachmentResponse(name, volumeID string, a *Attachment) ec2Attachment {
	resp := a.wire(volumeID)
	resp.XMLName = xml.Name{Space: ec2Namespace, Local: name}
	resp.RequestID = requestID()
	return resp
}

func volumeNotFound(id string) *apiError {
	return &apiError{http.StatusBadRequest, "InvalidVolume.NotFound", fmt.Sprintf("The volume '%s' does not exist.", id)}
}

// indexed is a Query protocol list parameter: name.1, name.2, ...
func indexed(r *http.Request, name string) []string {
	var values []string
	for i := 1; r.Form.Has(name + "." + strconv.Itoa(i)); i++ {
		values = append(values, r.Form.Get(name+"."+strconv.Itoa(i)))
	}
	return values
}

func required(r *http.Request, names ...string) *apiError {
	for _, name := range names {
		if r.Form.Get(name) == "" {
			return &apiError{http.StatusBadRequest, "MissingParameter", fmt.Sprintf("The request must contain the parameter %s", name)}
		}
	}
	return nil
}

// writeEC2Error writes an error as EC2 does, in a document of its own.
func writeEC2Error(w http.ResponseWriter, _ *http.Request, e apiError) {
	writeXML(w, e.Status, struct {
		XMLName   xml.Name `xml:"Response"`
		Code      string   `xml:"Errors>Error>Code"`
		Message   string   `xml:"Errors>Error>Message"`
		RequestID string   `xml:"RequestID"`
	}{Code: e.Code, Message: e.Message, RequestID: requestID()})
}
