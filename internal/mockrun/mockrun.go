// Package mockrun evaluates a Pulumi program under mocks and records every
// resource it declares, for the offline plan and the unit tests. Nothing
// here reaches AWS.
package mockrun

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Resource is one declared resource as the engine would receive it.
type Resource struct {
	URN     string
	Type    string
	Name    string
	Parent  string // parent URN
	Custom  bool   // false for ComponentResources
	Protect bool
	Inputs  resource.PropertyMap
	// ID and Outputs are what the mock answered: the inputs plus what AWS
	// would compute.
	ID      string
	Outputs resource.PropertyMap
	// DependsOn are the URNs the resource explicitly depends on.
	DependsOn []string
}

// Recorder is a pulumi.MockResourceMonitor that keeps what it is given.
type Recorder struct {
	mu        sync.Mutex
	resources []Resource
	tls       issuer
	// parameters are the account's SSM parameters, by name.
	parameters map[string]string
	// prior are an earlier run's resources, by URN: the stack's state.
	prior map[string]Resource
}

// Run evaluates program as stack of project with the given raw config,
// in an account with no SSM parameters.
func Run(project, stack string, config map[string]string, program pulumi.RunFunc) (*Recorder, error) {
	return RunWithParameters(project, stack, config, nil, program)
}

// RunWithParameters is Run in an account holding the SSM parameters
// given by name, as the records of a running cluster.
func RunWithParameters(project, stack string, config, parameters map[string]string, program pulumi.RunFunc) (*Recorder, error) {
	return RunAgain(project, stack, config, parameters, nil, program)
}

// RunAgain is RunWithParameters on a stack whose state is an earlier run's
// resources (prior), as a second `pulumi up` is: keys and certificates
// whose inputs did not change keep the values they were created with.
func RunAgain(project, stack string, config, parameters map[string]string, prior []Resource, program pulumi.RunFunc) (*Recorder, error) {
	rec := &Recorder{parameters: parameters, prior: map[string]Resource{}}
	for _, r := range prior {
		rec.prior[r.URN] = r
	}
	withConfig := func(info *pulumi.RunInfo) { info.Config = config }
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		return program(ctx)
	}, pulumi.WithMocks(project, stack, rec), withConfig)
	return rec, err
}

// NewResource records the resource and returns its inputs as its state,
// plus the few computed outputs kubeha reads back.
func (r *Recorder) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	req := args.RegisterRPC
	res := Resource{Type: args.TypeToken, Name: args.Name, Custom: args.Custom, Inputs: args.Inputs}
	if req != nil {
		res.Parent = req.GetParent()
		res.Protect = req.GetProtect()
		res.DependsOn = req.GetDependencies()
	}
	res.URN = urn(res.Parent, res.Type, res.Name)

	res.ID = args.Name + "-id"
	state := args.Inputs.Copy()
	outputs := computed(args.TypeToken, args.Name, args.Inputs)
	tlsOutputs, err := r.tls.outputs(args.TypeToken, args.Name, res)
	if err != nil {
		return "", nil, err
	}
	if before, ok := r.prior[res.URN]; ok && before.Inputs.DeepEquals(args.Inputs) {
		for k := range tlsOutputs {
			tlsOutputs[k] = before.Outputs[resource.PropertyKey(k)].StringValue()
		}
	}
	for k, v := range tlsOutputs {
		outputs[k] = v
	}
	for k, v := range outputs {
		state[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
	}
	state["arn"] = resource.NewStringProperty(fmt.Sprintf("arn:aws:mock:::%s/%s", args.TypeToken, args.Name))
	if args.TypeToken == "aws:s3/bucketV2:BucketV2" {
		// A bucket's ID is its name.
		res.ID = state["bucket"].StringValue()
	}
	res.Outputs = state
	r.mu.Lock()
	r.resources = append(r.resources, res)
	r.mu.Unlock()
	return res.ID, state, nil
}

// computed are the outputs AWS would fill in that kubeha uses.
func computed(typ, name string, inputs resource.PropertyMap) map[string]any {
	switch typ {
	case "aws:ec2/eip:Eip":
		return map[string]any{"allocationId": "eipalloc-" + name, "publicIp": EipAddress(name)}
	case "aws:route53/zone:Zone":
		return map[string]any{"zoneId": "Z" + strings.ToUpper(strings.ReplaceAll(name, "-", ""))}
	case "aws:s3/bucketV2:BucketV2":
		return map[string]any{"bucket": name + "-0123456789"}
	case "aws:lb/loadBalancer:LoadBalancer":
		return map[string]any{"dnsName": name + "-0123456789.elb.eu-west-1.amazonaws.com", "zoneId": "ZNLBMOCK", "arnSuffix": "net/" + name + "/0123456789"}
	case "aws:lb/targetGroup:TargetGroup":
		return map[string]any{"arnSuffix": "targetgroup/" + name + "/0123456789"}
	case "aws:route53/record:Record":
		return map[string]any{"fqdn": RecordFQDN(name)}
	case "aws:s3/bucketObjectv2:BucketObjectv2":
		// The digest S3 records on upload: of the file for a local source;
		// for a remote one (which a mock cannot fetch), of its address.
		// Inline content: of the content.
		var content []byte
		switch source := inputs["source"]; {
		case inputs["contentBase64"].IsString():
			content, _ = base64.StdEncoding.DecodeString(inputs["contentBase64"].StringValue())
		case !source.IsAsset():
			text := inputs["content"]
			if text.IsSecret() {
				text = text.SecretValue().Element
			}
			content = []byte(text.StringValue())
		case source.AssetValue().Path != "":
			content, _ = os.ReadFile(source.AssetValue().Path)
		default:
			content = []byte(source.AssetValue().URI)
		}
		sum := sha256.Sum256(content)
		return map[string]any{"checksumSha256": base64.StdEncoding.EncodeToString(sum[:])}
	case "aws:autoscaling/group:Group":
		return map[string]any{"name": GroupName(name)}
	case "aws:ec2/launchTemplate:LaunchTemplate":
		return map[string]any{"latestVersion": 1}
	case "random:index/randomString:RandomString":
		return map[string]any{"result": RandomString(name, inputs["keepers"], int(inputs["length"].NumberValue()))}
	case "random:index/randomBytes:RandomBytes":
		return map[string]any{"base64": base64.StdEncoding.EncodeToString(make([]byte, int(inputs["length"].NumberValue())))}
	}
	return map[string]any{}
}

// Computed outputs differ from every input, as AWS's do, so a test can
// tell a resource's real output from a name it passed in.

// EipAddress is the mock public address of the Elastic IP name: distinct
// per name, in TEST-NET-1.
func EipAddress(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("192.0.2.%d", 1+h.Sum32()%254)
}

// RandomString is the mock result of the random string name: lower-case
// letters and digits, the same for the same keepers and another when they
// change, as a replacement draws a new one.
func RandomString(name string, keepers resource.PropertyValue, length int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	seed := name
	if keepers.IsObject() {
		for _, k := range keepers.ObjectValue().StableKeys() {
			seed += "|" + string(k) + "=" + keepers.ObjectValue()[k].String()
		}
	}
	var out []byte
	for block := 0; len(out) < length; block++ {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s#%d", seed, block)))
		for _, b := range sum {
			out = append(out, alphabet[int(b)%len(alphabet)])
		}
	}
	return string(out[:length])
}

// JoinTokenPattern matches a kubeadm bootstrap token (id.secret), as the
// mocked join token is one; user-data holds only a placeholder of that
// form, "kubeha.0000000000000000", which nodes fill in at boot.
var JoinTokenPattern = regexp.MustCompile(`\b[a-z0-9]{6}\.[a-z0-9]{16}\b`)

// JoinTokens are the bootstrap tokens in text other than placeholder.
func JoinTokens(text, placeholder string) []string {
	var found []string
	for _, t := range JoinTokenPattern.FindAllString(text, -1) {
		if t != placeholder {
			found = append(found, t)
		}
	}
	return found
}

// RecordFQDN is the mock FQDN AWS reports for the Route 53 record name.
func RecordFQDN(name string) string { return name + ".fqdn.mock" }

// GroupName is the mock name AWS gives the auto-scaling group name (a
// generated suffix, as with a name prefix).
func GroupName(name string) string { return name + "-20261203000000000000000001" }

// Call answers the data-source lookups kubeha makes.
func (r *Recorder) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	switch args.Token {
	case "aws:ssm/getParameter:getParameter":
		// An image ID, as the parameter would hold; distinct per name.
		h := fnv.New64a()
		h.Write([]byte(args.Args["name"].StringValue()))
		out := args.Args.Copy()
		out["value"] = resource.NewStringProperty(fmt.Sprintf("ami-0%016x", h.Sum64()))
		out["type"] = resource.NewStringProperty("String")
		return out, nil
	case "aws:ssm/getParametersByPath:getParametersByPath":
		path := strings.TrimSuffix(args.Args["path"].StringValue(), "/") + "/"
		var names, values []resource.PropertyValue
		for _, name := range slices.Sorted(maps.Keys(r.parameters)) {
			// Not recursive: the path's own parameters only.
			if rest, ok := strings.CutPrefix(name, path); ok && !strings.Contains(rest, "/") {
				names = append(names, resource.NewStringProperty(name))
				values = append(values, resource.NewStringProperty(r.parameters[name]))
			}
		}
		out := args.Args.Copy()
		out["names"], out["values"] = resource.NewArrayProperty(names), resource.NewArrayProperty(values)
		return out, nil
	case "aws:ec2/getVpc:getVpc":
		out := args.Args.Copy()
		out["cidrBlock"] = resource.NewStringProperty("10.99.0.0/16")
		return out, nil
	}
	return nil, fmt.Errorf("mockrun: no mock for call %s", args.Token)
}

// Resources returns every recorded resource, sorted by URN.
func (r *Recorder) Resources() []Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]Resource(nil), r.resources...)
	sort.Slice(out, func(i, j int) bool { return out[i].URN < out[j].URN })
	return out
}

// OfType returns the recorded resources of one type token.
func (r *Recorder) OfType(typ string) []Resource {
	var out []Resource
	for _, res := range r.Resources() {
		if res.Type == typ {
			out = append(out, res)
		}
	}
	return out
}

// Named returns the resource of type typ and name, or fails.
func (r *Recorder) Named(typ, name string) (Resource, error) {
	for _, res := range r.OfType(typ) {
		if res.Name == name {
			return res, nil
		}
	}
	return Resource{}, fmt.Errorf("no %s named %s", typ, name)
}

// Component is the type and name of the innermost kubeha component that
// declared res, or "" for resources declared by the stack itself.
func (r *Recorder) Component(res Resource) (typ, name string) {
	byURN := map[string]Resource{}
	for _, x := range r.Resources() {
		byURN[x.URN] = x
	}
	for parent, ok := byURN[res.Parent]; ok; parent, ok = byURN[parent.Parent] {
		if strings.HasPrefix(parent.Type, "kubeha:index:") {
			return parent.Type, parent.Name
		}
	}
	return "", ""
}

// urn mirrors the mock monitor's URNs so parents can be followed.
func urn(parent, typ, name string) string {
	qualified := typ
	if parent != "" {
		if p := resource.URN(parent); p.IsValid() && p.QualifiedType() != resource.RootStackType {
			qualified = string(p.QualifiedType()) + "$" + typ
		}
	}
	stack, project := "stack", "project"
	if p := resource.URN(parent); p.IsValid() {
		stack, project = string(p.Stack()), string(p.Project())
	}
	return fmt.Sprintf("urn:pulumi:%s::%s::%s::%s", stack, project, qualified, name)
}

// String returns a string input, or "" if it is absent or not a string.
func (res Resource) String(key string) string {
	v, ok := res.Inputs[resource.PropertyKey(key)]
	if !ok {
		return ""
	}
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	if v.IsString() {
		return v.StringValue()
	}
	return ""
}

// Bool returns a bool input, or false.
func (res Resource) Bool(key string) bool {
	v, ok := res.Inputs[resource.PropertyKey(key)]
	return ok && v.IsBool() && v.BoolValue()
}

// Strings returns a list-of-strings input.
func (res Resource) Strings(key string) []string {
	v, ok := res.Inputs[resource.PropertyKey(key)]
	if !ok || !v.IsArray() {
		return nil
	}
	var out []string
	for _, e := range v.ArrayValue() {
		if e.IsString() {
			out = append(out, e.StringValue())
		}
	}
	return out
}

// Tags returns the tags input.
func (res Resource) Tags() map[string]string {
	out := map[string]string{}
	v, ok := res.Inputs["tags"]
	if !ok || !v.IsObject() {
		return out
	}
	for k, t := range v.ObjectValue() {
		if t.IsString() {
			out[string(k)] = t.StringValue()
		}
	}
	return out
}

// Get follows a path of object keys and list indices ("0", "1", ...)
// through the inputs, looking through secrets. A missing step gives null.
func (res Resource) Get(path ...string) resource.PropertyValue {
	v := resource.NewObjectProperty(res.Inputs)
	for _, step := range path {
		for v.IsSecret() {
			v = v.SecretValue().Element
		}
		switch {
		case v.IsObject():
			v = v.ObjectValue()[resource.PropertyKey(step)]
		case v.IsArray():
			i, err := strconv.Atoi(step)
			if err != nil || i < 0 || i >= len(v.ArrayValue()) {
				return resource.NewNullProperty()
			}
			v = v.ArrayValue()[i]
		default:
			return resource.NewNullProperty()
		}
	}
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	return v
}

// IsSecret reports whether the input at key was passed as a Pulumi secret.
func (res Resource) IsSecret(key string) bool {
	v, ok := res.Inputs[resource.PropertyKey(key)]
	return ok && v.IsSecret()
}
