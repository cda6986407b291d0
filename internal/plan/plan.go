// Package plan is the offline plan: it evaluates the real stack program under
// Pulumi mocks with one stack file and lays out what it would create, by
// component and by zone. It needs no AWS account and no Pulumi CLI.
package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/program"
)

// Regional is the zone column of resources that belong to no single zone.
const Regional = "regional"

// Plan is what a stack would create.
type Plan struct {
	Stack     string
	Config    components.ClusterArgs
	Resources []Resource
	NotHA     []components.Finding
	// Upgrade says what upgrading from the running release will do.
	Upgrade []string
}

// Resource is one AWS resource the stack declares.
type Resource struct {
	Component string // e.g. "Network (kubeha-dev-network)"
	Zone      string // a zone, or Regional
	Type      string
	Name      string
	// Parent is the URN of the component that declared it.
	Parent string
	Inputs resource.PropertyMap
}

// Evaluate runs the stack program for stackFile under mocks, for a
// cluster that does not exist yet, or whose control plane records running
// (the release every API server runs): a newer stack release is then an
// upgrade, which the plan describes.
func Evaluate(stackName, stackFile, running string) (*Plan, error) {
	raw, err := config.ReadStackFile(stackFile)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stackFile, err)
	}
	var parameters map[string]string
	if running != "" {
		parameters = map[string]string{bootstrap.RunningVersionParameter(cfg.ClusterName): running}
	}
	rec, err := mockrun.RunWithParameters("kubeha", stackName, raw, parameters, program.Stack(raw))
	if err != nil {
		return nil, fmt.Errorf("evaluating stack %s: %w", stackName, err)
	}
	p := &Plan{Stack: stackName, Config: cfg, NotHA: cfg.NotHA()}
	args := cfg.WithDefaults()
	args.RunningKubernetesVersion = running
	p.Upgrade = args.UpgradeSteps()
	for _, r := range rec.Resources() {
		if !r.Custom {
			continue
		}
		component := "Stack"
		if typ, name := rec.Component(r); typ != "" {
			component = fmt.Sprintf("%s (%s)", strings.TrimPrefix(typ, "kubeha:index:"), name)
		}
		p.Resources = append(p.Resources, Resource{Component: component, Zone: zoneOf(r.Name, cfg.Zones), Type: r.Type, Name: r.Name,
			Parent: r.Parent, Inputs: r.Inputs})
	}
	sort.SliceStable(p.Resources, func(i, j int) bool {
		a, b := p.Resources[i], p.Resources[j]
		if a.Component != b.Component {
			return a.Component < b.Component
		}
		if a.Zone != b.Zone {
			return zoneRank(a.Zone, cfg.Zones) < zoneRank(b.Zone, cfg.Zones)
		}
		return a.Type+a.Name < b.Type+b.Name
	})
	return p, nil
}

// zoneOf reads the zone from a resource's name: zonal children carry their
// zone in their name by convention (see package components).
func zoneOf(name string, zones []string) string {
	for _, z := range zones {
		if strings.HasSuffix(name, "-"+z) || strings.Contains(name, "-"+z+"-") {
			return z
		}
	}
	return Regional
}

func zoneRank(zone string, zones []string) int {
	for i, z := range zones {
		if z == zone {
			return i
		}
	}
	return len(zones)
}

// Count is how many resources match component and zone; "" matches all.
func (p *Plan) Count(component, zone string) int {
	n := 0
	for _, r := range p.Resources {
		if (component == "" || r.Component == component) && (zone == "" || r.Zone == zone) {
			n++
		}
	}
	return n
}

// Components lists the components in plan order.
func (p *Plan) Components() []string {
	var out []string
	for _, r := range p.Resources {
		if len(out) == 0 || out[len(out)-1] != r.Component {
			out = append(out, r.Component)
		}
	}
	return out
}

// Write prints the plan for a person: every resource, then the counts,
// then whatever in the stack is not HA.
func (p *Plan) Write(w io.Writer) error {
	c := p.Config
	fmt.Fprintf(w, "kubeha plan: stack %s, cluster %s (%s) in %s, zones %s\n",
		p.Stack, c.ClusterName, c.Environment, c.Region, strings.Join(c.Zones, ", "))
	fmt.Fprintf(w, "Evaluated offline under Pulumi mocks: no AWS call was made and nothing was created.\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	component, zone := "", ""
	for _, r := range p.Resources {
		if r.Component != component {
			component, zone = r.Component, ""
			fmt.Fprintf(tw, "\n%s\n", component)
		}
		if r.Zone != zone {
			zone = r.Zone
			fmt.Fprintf(tw, "  %s (%d)\n", zone, p.Count(component, zone))
		}
		fmt.Fprintf(tw, "    %s\t%s\n", r.Type, r.Name)
	}
	tw.Flush()

	columns := append(append([]string{}, c.Zones...), Regional)
	fmt.Fprintf(w, "\nResources by component and zone:\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\t%s\ttotal\t\n", strings.Join(columns, "\t"))
	for _, comp := range append(p.Components(), "") {
		label := comp
		if comp == "" {
			label = "total"
		}
		fmt.Fprintf(tw, "%s\t", label)
		for _, z := range columns {
			fmt.Fprintf(tw, "%d\t", p.Count(comp, z))
		}
		fmt.Fprintf(tw, "%d\t\n", p.Count(comp, ""))
	}
	tw.Flush()

	byType := map[string]int{}
	for _, r := range p.Resources {
		byType[r.Type]++
	}
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	sort.Strings(types)
	fmt.Fprintf(w, "\nResources by type:\n")
	for _, t := range types {
		fmt.Fprintf(w, "  %3d  %s\n", byType[t], t)
	}

	if len(p.NotHA) == 0 {
		fmt.Fprintf(w, "\nHA check: no setting in this stack gives up surviving the loss of one zone.\n")
	} else {
		fmt.Fprintf(w, "\nNOT HA: %d setting(s) in this stack do not survive the loss of a zone:\n", len(p.NotHA))
		for _, f := range p.NotHA {
			fmt.Fprintf(w, "  - %s\n", f)
		}
	}
	if len(p.Upgrade) > 0 {
		fmt.Fprintf(w, "\nUPGRADE:\n  %s\n", strings.Join(p.Upgrade, "\n  "))
	}
	_, err := fmt.Fprintf(w, "\nTotal: %d resources.\n", len(p.Resources))
	return err
}

// WriteJSON prints the plan for tools: the stack, every resource with its
// type, name, parent and inputs (secrets as "[secret]"), and the NOT HA
// findings.
func (p *Plan) WriteJSON(w io.Writer) error {
	type jsonResource struct {
		Type      string         `json:"type"`
		Name      string         `json:"name"`
		Parent    string         `json:"parent"`
		Component string         `json:"component"`
		Zone      string         `json:"zone"`
		Inputs    map[string]any `json:"inputs"`
	}
	out := struct {
		Stack     string               `json:"stack"`
		Cluster   string               `json:"cluster"`
		Region    string               `json:"region"`
		Zones     []string             `json:"zones"`
		Resources []jsonResource       `json:"resources"`
		NotHA     []components.Finding `json:"notHA"`
	}{Stack: p.Stack, Cluster: p.Config.ClusterName, Region: p.Config.Region, Zones: p.Config.Zones, NotHA: p.NotHA}
	for _, r := range p.Resources {
		out.Resources = append(out.Resources, jsonResource{Type: r.Type, Name: r.Name, Parent: r.Parent,
			Component: r.Component, Zone: r.Zone, Inputs: plainObject(r.Inputs)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// plain is a property value as JSON would hold it, with secrets hidden.
func plain(v resource.PropertyValue) any {
	switch {
	case v.IsSecret() || (v.IsOutput() && v.OutputValue().Secret):
		return "[secret]"
	case v.IsComputed() || (v.IsOutput() && !v.OutputValue().Known):
		return "[unknown]"
	case v.IsOutput():
		return plain(v.OutputValue().Element)
	case v.IsBool():
		return v.BoolValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsString():
		return v.StringValue()
	case v.IsArray():
		list := []any{}
		for _, e := range v.ArrayValue() {
			list = append(list, plain(e))
		}
		return list
	case v.IsObject():
		return plainObject(v.ObjectValue())
	case v.IsResourceReference():
		return string(v.ResourceReferenceValue().URN)
	case v.IsAsset() || v.IsArchive():
		return "[asset]"
	}
	return nil
}

func plainObject(m resource.PropertyMap) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[string(k)] = plain(v)
	}
	return out
}
