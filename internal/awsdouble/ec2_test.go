package awsdouble

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

type describedVolume struct {
	ID          string `xml:"volumeId"`
	Size        int    `xml:"size"`
	Zone        string `xml:"availabilityZone"`
	Status      string `xml:"status"`
	Attachments []struct {
		VolumeID   string `xml:"volumeId"`
		InstanceID string `xml:"instanceId"`
		Device     string `xml:"device"`
		Status     string `xml:"status"`
	} `xml:"attachmentSet>item"`
}

func ec2Call(t *testing.T, c *Cloud, action string, params ...string) (int, string) {
	t.Helper()
	form := url.Values{"Action": {action}, "Version": {"2016-11-15"}}
	for i := 0; i < len(params); i += 2 {
		form.Set(params[i], params[i+1])
	}
	return query(t, c, EC2, form)
}

func describeVolume(t *testing.T, c *Cloud, id string) describedVolume {
	t.Helper()
	code, body := ec2Call(t, c, "DescribeVolumes", "VolumeId.1", id)
	if code != http.StatusOK || !strings.Contains(body, `<DescribeVolumesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">`) {
		t.Fatalf("DescribeVolumes %s: %d %s", id, code, body)
	}
	var resp struct {
		Volumes []describedVolume `xml:"volumeSet>item"`
	}
	decodeXML(t, body, &resp)
	if len(resp.Volumes) != 1 || resp.Volumes[0].ID != id {
		t.Fatalf("DescribeVolumes %s: %s", id, body)
	}
	return resp.Volumes[0]
}

func ec2ErrorCode(t *testing.T, body string) string {
	t.Helper()
	var resp struct {
		Code      string `xml:"Errors>Error>Code"`
		RequestID string `xml:"RequestID"`
	}
	decodeXML(t, body, &resp)
	if resp.RequestID == "" {
		t.Errorf("no RequestID in %s", body)
	}
	return resp.Code
}

// hooks records the lab's OnAttach and OnDetach calls.
type hooks struct {
	mu       sync.Mutex
	calls    []string
	attachTo error
}

func (h *hooks) install(c *Cloud) {
	c.OnAttach = func(volumeID, instanceID, device string) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.calls = append(h.calls, "attach "+volumeID+" "+instanceID+" "+device)
		return h.attachTo
	}
	c.OnDetach = func(volumeID, instanceID string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.calls = append(h.calls, "detach "+volumeID+" "+instanceID)
	}
}

func (h *hooks) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.calls, "; ")
}

// Attach and detach answer at once with "attaching" and "detaching"; the
// volume is attached once the delay is over and OnAttach made its device,
// and detached after the delay, with OnDetach. EC2's refusals come first.
func TestEC2AttachAndDetachAreAsynchronous(t *testing.T) {
	c := NewCloud("eu-west-1")
	c.AttachDelay = 30 * time.Millisecond
	h := &hooks{}
	h.install(c)
	c.AddVolume(Volume{ID: "vol-a", Zone: "eu-west-1a", SizeGiB: 20})
	c.AddVolume(Volume{ID: "vol-b", Zone: "eu-west-1b", SizeGiB: 20})
	c.AddInstance(Instance{ID: "i-1", Zone: "eu-west-1a"})
	c.AddInstance(Instance{ID: "i-2", Zone: "eu-west-1a"})

	if v := describeVolume(t, c, "vol-a"); v.Status != "available" || v.Size != 20 || v.Zone != "eu-west-1a" || len(v.Attachments) != 0 {
		t.Errorf("a new volume: %+v", v)
	}
	for _, tc := range []struct{ action, code string }{
		{"DescribeVolumes VolumeId.1 vol-nope", "InvalidVolume.NotFound"},
		{"AttachVolume VolumeId vol-nope InstanceId i-1 Device /dev/xvdf", "InvalidVolume.NotFound"},
		{"AttachVolume VolumeId vol-a InstanceId i-nope Device /dev/xvdf", "InvalidInstanceID.NotFound"},
		{"AttachVolume VolumeId vol-b InstanceId i-1 Device /dev/xvdf", "InvalidVolume.ZoneMismatch"},
		{"AttachVolume VolumeId vol-a InstanceId i-1", "MissingParameter"},
		{"DetachVolume VolumeId vol-a", "IncorrectState"},
		{"RunInstances", "InvalidAction"},
	} {
		f := strings.Fields(tc.action)
		if code, body := ec2Call(t, c, f[0], f[1:]...); code != http.StatusBadRequest || ec2ErrorCode(t, body) != tc.code {
			t.Errorf("%s: %d %s, want %s", tc.action, code, body, tc.code)
		}
	}

	code, body := ec2Call(t, c, "AttachVolume", "VolumeId", "vol-a", "InstanceId", "i-1", "Device", "/dev/xvdf")
	if code != http.StatusOK || !strings.Contains(body, `<AttachVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">`) ||
		!strings.Contains(body, "<status>attaching</status>") || !strings.Contains(body, "<instanceId>i-1</instanceId>") {
		t.Fatalf("AttachVolume: %d %s", code, body)
	}
	if v := describeVolume(t, c, "vol-a"); v.Status != "in-use" || len(v.Attachments) != 1 || v.Attachments[0].Status != "attaching" ||
		v.Attachments[0].InstanceID != "i-1" || v.Attachments[0].Device != "/dev/xvdf" {
		t.Errorf("a volume being attached: %+v", v)
	}
	if code, body := ec2Call(t, c, "AttachVolume", "VolumeId", "vol-a", "InstanceId", "i-2", "Device", "/dev/xvdf"); code != http.StatusBadRequest || ec2ErrorCode(t, body) != "VolumeInUse" {
		t.Errorf("attaching a volume held by another instance: %d %s", code, body)
	}
	waitFor(t, func() bool { return describeVolume(t, c, "vol-a").Attachments[0].Status == "attached" })
	if h.String() != "attach vol-a i-1 /dev/xvdf" {
		t.Errorf("hooks: %s", h)
	}

	if code, body := ec2Call(t, c, "DetachVolume", "VolumeId", "vol-a", "InstanceId", "i-2"); code != http.StatusBadRequest || ec2ErrorCode(t, body) != "InvalidAttachment.NotFound" {
		t.Errorf("detaching from the wrong instance: %d %s", code, body)
	}
	code, body = ec2Call(t, c, "DetachVolume", "VolumeId", "vol-a", "InstanceId", "i-1", "Force", "true")
	if code != http.StatusOK || !strings.Contains(body, "<DetachVolumeResponse") || !strings.Contains(body, "<status>detaching</status>") {
		t.Fatalf("DetachVolume: %d %s", code, body)
	}
	if v, _ := c.Volume("vol-a"); v.Attachment == nil || v.Attachment.State != Detaching {
		t.Errorf("a volume being detached: %+v", v.Attachment)
	}
	waitFor(t, func() bool { return describeVolume(t, c, "vol-a").Status == "available" })
	if h.String() != "attach vol-a i-1 /dev/xvdf; detach vol-a i-1" {
		t.Errorf("hooks: %s", h)
	}
}

// If the lab cannot make the device, the attachment never completes, as
// a stuck attachment does on EC2; the failure is logged.
func TestEC2AttachStaysAttachingWhenOnAttachFails(t *testing.T) {
	c := NewCloud("eu-west-1")
	c.AttachDelay = time.Millisecond
	logged := make(chan string, 1)
	c.Logf = func(format string, args ...any) { logged <- format }
	h := &hooks{attachTo: errors.New("no loop device")}
	h.install(c)
	c.AddVolume(Volume{ID: "vol-a", Zone: "eu-west-1a"})
	c.AddInstance(Instance{ID: "i-1", Zone: "eu-west-1a"})
	if code, body := ec2Call(t, c, "AttachVolume", "VolumeId", "vol-a", "InstanceId", "i-1", "Device", "/dev/xvdf"); code != http.StatusOK {
		t.Fatalf("AttachVolume: %d %s", code, body)
	}
	select {
	case <-logged:
	case <-time.After(5 * time.Second):
		t.Fatal("the failed OnAttach was not logged")
	}
	if v, _ := c.Volume("vol-a"); v.Attachment == nil || v.Attachment.State != Attaching {
		t.Errorf("after a failed OnAttach: %+v", v.Attachment)
	}
}

// A replaced instance may still hold its volume; the volume is free once
// that instance is terminated.
func TestEC2TerminatingAnInstanceFreesItsVolume(t *testing.T) {
	c := NewCloud("eu-west-1")
	c.AttachDelay = time.Millisecond
	h := &hooks{}
	h.install(c)
	c.AddVolume(Volume{ID: "vol-a", Zone: "eu-west-1a"})
	c.AddInstance(Instance{ID: "i-new", Zone: "eu-west-1a"})
	c.AddInstance(Instance{ID: "i-old", Zone: "eu-west-1a"})
	if err := c.ForceAttachment("vol-a", "i-old"); err != nil {
		t.Fatal(err)
	}
	if err := c.ForceAttachment("vol-nope", "i-old"); err == nil {
		t.Error("forced an attachment of no volume")
	}
	if v := describeVolume(t, c, "vol-a"); len(v.Attachments) != 1 || v.Attachments[0].InstanceID != "i-old" || v.Attachments[0].Status != "attached" {
		t.Errorf("a volume held by the old instance: %+v", v)
	}
	if code, body := ec2Call(t, c, "AttachVolume", "VolumeId", "vol-a", "InstanceId", "i-new", "Device", "/dev/xvdf"); code != http.StatusBadRequest || ec2ErrorCode(t, body) != "VolumeInUse" {
		t.Errorf("attaching a volume the old instance holds: %d %s", code, body)
	}
	c.TerminateInstance("i-old")
	if v := describeVolume(t, c, "vol-a"); v.Status != "available" || h.String() != "detach vol-a i-old" {
		t.Errorf("after terminating the old instance: %+v, hooks %s", v, h)
	}
	if code, body := ec2Call(t, c, "AttachVolume", "VolumeId", "vol-a", "InstanceId", "i-old", "Device", "/dev/xvdf"); code != http.StatusBadRequest || ec2ErrorCode(t, body) != "InvalidInstanceID.NotFound" {
		t.Errorf("attaching to the terminated instance: %d %s", code, body)
	}
	if code, body := ec2Call(t, c, "AttachVolume", "VolumeId", "vol-a", "InstanceId", "i-new", "Device", "/dev/xvdf"); code != http.StatusOK {
		t.Errorf("attaching the freed volume: %d %s", code, body)
	}
	waitFor(t, func() bool { v, _ := c.Volume("vol-a"); return v.Attachment.State == Attached })
}
