package lab

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/awsdouble"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/netlab"
)

// Declare gives the double what a Pulumi program declared, as `pulumi up`
// would have created it: EBS volumes, Route 53 zones, secrets with their
// values, and buckets with their objects (from local files: the
// rehearsal's own builds).
func (c *Cloud) Declare(resources []mockrun.Resource) error {
	secretValues := map[string]string{} // secret ID -> its version's value
	for _, r := range resources {
		if r.Type == "aws:secretsmanager/secretVersion:SecretVersion" {
			secretValues[r.String("secretId")] = r.String("secretString")
		}
	}
	for _, r := range resources {
		switch r.Type {
		case "aws:ebs/volume:Volume":
			c.AddVolume(awsVolume(r))
		case "aws:route53/zone:Zone":
			c.AddHostedZone(r.Outputs["zoneId"].StringValue(), r.String("name"))
		case "aws:secretsmanager/secret:Secret":
			c.AddSecret(r.Outputs["arn"].StringValue(), r.ID, secretValues[r.ID])
		case "aws:s3/bucketV2:BucketV2":
			if err := c.AddBucket(r.ID); err != nil {
				return err
			}
		}
	}
	// Records go into their zones, declared above.
	for _, r := range resources {
		if r.Type == "aws:route53/record:Record" && r.String("type") == "A" && len(r.Strings("records")) > 0 {
			c.AddRecord(r.String("zoneId"), r.String("name"), uint32(r.Get("ttl").NumberValue()), r.Strings("records")...)
		}
	}
	return c.PutObjects(resources, "")
}

// PutObjects uploads the objects the program declared whose key starts
// with prefix, as `pulumi up` does: from local files (the rehearsal's own
// builds) or inline content, plain or base64.
func (c *Cloud) PutObjects(resources []mockrun.Resource, prefix string) error {
	for _, r := range resources {
		if r.Type != "aws:s3/bucketObjectv2:BucketObjectv2" || !strings.HasPrefix(r.String("key"), prefix) {
			continue
		}
		var data []byte
		switch source := r.Get("source"); {
		case !source.IsNull():
			if !source.IsAsset() || source.AssetValue().Path == "" {
				return fmt.Errorf("lab: %s: the rehearsal serves local files only, not %v", r.Name, source)
			}
			var err error
			if data, err = os.ReadFile(source.AssetValue().Path); err != nil {
				return err
			}
		case r.String("contentBase64") != "":
			var err error
			if data, err = base64.StdEncoding.DecodeString(r.String("contentBase64")); err != nil {
				return fmt.Errorf("lab: %s: %w", r.Name, err)
			}
		default:
			data = []byte(r.String("content"))
		}
		if err := c.PutObject(r.String("bucket"), r.String("key"), data); err != nil {
			return err
		}
	}
	return nil
}

func awsVolume(r mockrun.Resource) awsdouble.Volume {
	return awsdouble.Volume{ID: r.ID, Zone: r.String("availabilityZone"), SizeGiB: int(r.Get("size").NumberValue())}
}

// UserData is the user-data of the launch template tagged tag=value, as
// EC2 hands it to the instance: base64-decoded, nothing else.
func UserData(resources []mockrun.Resource, tag, value string) ([]byte, error) {
	r, err := launchTemplate(resources, tag, value)
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.String("userData"))
}

// launchTemplate is the launch template tagged tag=value.
func launchTemplate(resources []mockrun.Resource, tag, value string) (mockrun.Resource, error) {
	for _, r := range resources {
		if r.Type == "aws:ec2/launchTemplate:LaunchTemplate" && r.Tags()[tag] == value {
			return r, nil
		}
	}
	return mockrun.Resource{}, fmt.Errorf("lab: no launch template tagged %s=%s", tag, value)
}

// InstanceTags are the tags the launch template tagged tag=value gives
// its instances.
func InstanceTags(resources []mockrun.Resource, tag, value string) (map[string]string, error) {
	r, err := launchTemplate(resources, tag, value)
	if err != nil {
		return nil, err
	}
	tags := map[string]string{}
	for _, spec := range r.Get("tagSpecifications").ArrayValue() {
		if spec.ObjectValue()["resourceType"].StringValue() == "instance" {
			for k, v := range spec.ObjectValue()["tags"].ObjectValue() {
				tags[string(k)] = v.StringValue()
			}
		}
	}
	return tags, nil
}

// PutResponseHopLimit is the metadata hop limit of the launch template
// tagged tag=value.
func PutResponseHopLimit(resources []mockrun.Resource, tag, value string) (int, error) {
	r, err := launchTemplate(resources, tag, value)
	if err != nil {
		return 0, err
	}
	limit := r.Get("metadataOptions", "httpPutResponseHopLimit")
	if !limit.IsNumber() {
		return 0, fmt.Errorf("lab: launch template %s sets no metadata hop limit", r.Name)
	}
	return int(limit.NumberValue()), nil
}

// NodeGroup is an auto-scaling group of one, as kubeha gives each etcd
// member and control-plane node: Start launches an instance from the
// launch template's user-data; Kill terminates it.
type NodeGroup struct {
	Name, Zone string
	Host       *netlab.Host
	UserData   []byte
	// Tags are its instances' tags.
	Tags map[string]string
	// PutResponseHopLimit is its instances' metadata hop limit.
	PutResponseHopLimit int
	// Instance is the running instance, or nil; Killed the last one Kill
	// ended.
	Instance *Instance
	Killed   string
	cloud    *Cloud
	rootfs   string
	// templateVersion counts the launch template's versions: SetUserData
	// writes a new one.
	templateVersion int
}

// NewNodeGroup is an empty group whose instances run on host.
func (c *Cloud) NewNodeGroup(rootfs, name, zone string, host *netlab.Host, userData []byte) *NodeGroup {
	return &NodeGroup{Name: name, Zone: zone, Host: host, UserData: userData, cloud: c, rootfs: rootfs}
}

// Start launches a new instance, held out of service by the group's launch
// hook until its first boot completes it.
func (g *NodeGroup) Start() error {
	g.templateVersion = max(g.templateVersion, 1)
	g.cloud.SetGroup(g.Name, g.Tags, "lt-"+g.Name, strconv.Itoa(g.templateVersion))
	i, err := g.cloud.launch(g.rootfs, g.Name, g.Zone, g.Host, g.UserData, g.Name, g.Tags, g.PutResponseHopLimit)
	if err != nil {
		return err
	}
	g.Instance = i
	return nil
}

// SetUserData is `pulumi up` changing the launch template: a new version
// if userData differs, which the group launches from while its running
// instance keeps the one it launched from.
func (g *NodeGroup) SetUserData(userData []byte) {
	if bytes.Equal(userData, g.UserData) {
		return
	}
	g.UserData = userData
	g.templateVersion++
	g.cloud.SetGroup(g.Name, g.Tags, "lt-"+g.Name, strconv.Itoa(g.templateVersion))
}

// InService is whether the running instance's launch hook was completed.
func (g *NodeGroup) InService() bool {
	if g.Instance == nil {
		return false
	}
	gi, ok := g.cloud.GroupInstance(g.Instance.ID)
	return ok && gi.State == awsdouble.InService
}

// Replace does what the group does with an instance that gave up:
// terminates it and launches a new one from the same launch template.
func (g *NodeGroup) Replace() error {
	g.Terminate()
	return g.Start()
}

// Terminate shuts the instance down, as EC2 terminates one: its services
// get 30 seconds to stop.
func (g *NodeGroup) Terminate() {
	if g.Instance != nil {
		_ = g.cloud.Terminate(g.Instance, 30*time.Second)
		g.Instance = nil
	}
}

// UnitLog is what a systemd unit of the running instance logged.
func (g *NodeGroup) UnitLog(unit string) string {
	return g.report("journalctl", "--no-pager", "--output", "cat", "--unit", unit)
}

// RecentLog is the last lines a unit logged on the running instance.
func (g *NodeGroup) RecentLog(unit string, lines int) string {
	return g.report("journalctl", "--no-pager", "--output", "short-iso", "--lines", fmt.Sprint(lines), "--unit", unit)
}

// BootState is where the running instance's boot stands: systemd's state
// and queued jobs, and cloud-init's, for a first boot that logged nothing.
func (g *NodeGroup) BootState() string {
	return g.report("sh", "-c", "systemctl is-system-running; systemctl list-jobs --no-pager; cloud-init status --long")
}

// report is what args print on the running instance, or why they could not.
func (g *NodeGroup) report(args ...string) string {
	if g.Instance == nil {
		return g.Name + " runs no instance"
	}
	out, err := g.Instance.Exec(args...)
	if err != nil {
		return err.Error()
	}
	return out
}

// BootstrapLog is what the running instance's first boot logged.
func (g *NodeGroup) BootstrapLog() string { return g.UnitLog(bootstrap.BootstrapUnit) }

// Kill ends the instance at once, as a lost host, and terminates it.
func (g *NodeGroup) Kill() {
	if g.Instance != nil {
		_ = g.cloud.Terminate(g.Instance, 0)
		g.Killed, g.Instance = g.Instance.ID, nil
	}
}

// DeclaredSecret is the value, as files by name, of the Secrets Manager
// secret the program stored under a name ending in suffix.
func DeclaredSecret(resources []mockrun.Resource, suffix string) (map[string]string, error) {
	for _, r := range resources {
		if r.Type == "aws:secretsmanager/secretVersion:SecretVersion" && strings.HasSuffix(r.Name, suffix) {
			var files map[string]string
			if err := json.Unmarshal([]byte(r.String("secretString")), &files); err != nil {
				return nil, fmt.Errorf("lab: secret %s: %w", r.Name, err)
			}
			return files, nil
		}
	}
	return nil, fmt.Errorf("lab: the program stores no secret named *%s", suffix)
}

// SetSecretEntry sets one entry of the secret the program declared under
// a name ending in suffix, keeping the others, as `pulumi up` does when
// only that entry's input changed.
func (c *Cloud) SetSecretEntry(resources []mockrun.Resource, suffix, entry, value string) error {
	for _, r := range resources {
		if r.Type != "aws:secretsmanager/secret:Secret" || !strings.HasSuffix(r.Name, suffix) {
			continue
		}
		arn := r.Outputs["arn"].StringValue()
		current, ok := c.Secret(arn)
		if !ok {
			return fmt.Errorf("lab: no secret %s", arn)
		}
		files := map[string]string{}
		if err := json.Unmarshal([]byte(current), &files); err != nil {
			return fmt.Errorf("lab: secret %s: %w", r.Name, err)
		}
		files[entry] = value
		data, err := json.Marshal(files)
		if err != nil {
			return err
		}
		c.AddSecret(arn, r.ID, string(data))
		return nil
	}
	return fmt.Errorf("lab: the program declares no secret named *%s", suffix)
}

// DeclaredBucket is the name of the bucket the program declared under a
// name ending in suffix.
func DeclaredBucket(resources []mockrun.Resource, suffix string) (string, error) {
	for _, r := range resources {
		if r.Type == "aws:s3/bucketV2:BucketV2" && strings.HasSuffix(r.Name, suffix) {
			return r.ID, nil
		}
	}
	return "", fmt.Errorf("lab: the program declares no bucket named *%s", suffix)
}
