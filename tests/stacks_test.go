// Package tests holds whole-stack tests: every stack file evaluated under
// mocks, and the checks that keep the docs and Pulumi.yaml in step with the
// config struct.
package tests

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/program"
)

// stackFiles maps each stack name to its file in stacks/.
func stackFiles(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("../stacks/Pulumi.*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no stack files found: %v", err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Pulumi."), ".yaml")] = f
	}
	return out
}

func evaluate(t *testing.T, file string) (components.ClusterArgs, *mockrun.Recorder) {
	t.Helper()
	return evaluateAt(t, file, "")
}

// evaluateAt is evaluate with the stack's kubernetesVersion set to
// version, unless that is "".
func evaluateAt(t *testing.T, file, version string) (components.ClusterArgs, *mockrun.Recorder) {
	t.Helper()
	raw, err := config.ReadStackFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if version != "" {
		raw["kubeha:kubernetesVersion"] = version
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	rec, err := mockrun.Run("kubeha", cfg.Environment, raw, program.Stack(raw))
	if err != nil {
		t.Fatalf("%s: program failed under mocks: %v", file, err)
	}
	return cfg, rec
}

func TestEveryStackEvaluates(t *testing.T) {
	stacks := stackFiles(t)
	for _, want := range []string{"dev", "staging", "prod"} {
		if stacks[want] == "" {
			t.Errorf("stacks/Pulumi.%s.yaml is missing", want)
		}
	}
	for name, file := range stacks {
		t.Run(name, func(t *testing.T) {
			cfg, rec := evaluate(t, file)
			if cfg.Environment != name {
				t.Errorf("%s sets environment %q", file, cfg.Environment)
			}
			if len(cfg.Zones) != 3 {
				t.Errorf("%s uses %d zones, want 3", file, len(cfg.Zones))
			}
			subnetsPerZone := map[string]int{}
			for _, s := range rec.OfType("aws:ec2/subnet:Subnet") {
				subnetsPerZone[s.String("availabilityZone")]++
			}
			for _, z := range cfg.Zones {
				if subnetsPerZone[z] != 2 {
					t.Errorf("%s: %d subnets in %s, want a public and a private one", name, subnetsPerZone[z], z)
				}
			}
			wantNATs := len(cfg.Zones)
			if cfg.Network.SharedNatGateway {
				wantNATs = 1
			}
			if n := len(rec.OfType("aws:ec2/natGateway:NatGateway")); n != wantNATs {
				t.Errorf("%s: %d NAT gateways, want %d", name, n, wantNATs)
			}
			etcdPerZone := map[string]int{}
			for _, v := range rec.OfType("aws:ebs/volume:Volume") {
				if v.Tags()["kubeha.io/etcd-member"] != "" {
					etcdPerZone[v.String("availabilityZone")]++
				}
			}
			for i, z := range cfg.Zones {
				want := cfg.Etcd.Members / len(cfg.Zones)
				if i < cfg.Etcd.Members%len(cfg.Zones) {
					want++
				}
				if etcdPerZone[z] != want {
					t.Errorf("%s: %d etcd members in %s, want %d", name, etcdPerZone[z], z, want)
				}
			}
			groups := map[string]int{}
			for _, g := range rec.OfType("aws:autoscaling/group:Group") {
				_, component := rec.Component(g)
				groups[strings.TrimPrefix(component, cfg.ClusterName+"-")]++
			}
			if groups["etcd"] != cfg.Etcd.Members || groups["control-plane"] != len(cfg.Zones) {
				t.Errorf("%s: auto-scaling groups by component %v, want one per etcd member (%d) and one control-plane node per zone (%d)",
					name, groups, cfg.Etcd.Members, len(cfg.Zones))
			}
			// Every pool has one group in every zone, confined to that zone.
			for _, pool := range cfg.Workers {
				for _, z := range cfg.Zones {
					g, err := rec.Named("aws:autoscaling/group:Group", cfg.ClusterName+"-"+pool.Name+"-"+z)
					if err != nil {
						t.Errorf("%s: pool %s has no group in %s: %v", name, pool.Name, z, err)
						continue
					}
					if subnet := g.Strings("vpcZoneIdentifiers"); len(subnet) != 1 || subnetZone(rec, subnet[0]) != z {
						t.Errorf("%s: %s spans subnets %v, want only %s's private subnet", name, g.Name, subnet, z)
					}
					tags := map[string]string{}
					for _, tag := range g.Get("tags").ArrayValue() {
						tags[tag.ObjectValue()["key"].StringValue()] = tag.ObjectValue()["value"].StringValue()
					}
					for _, taint := range pool.Taints {
						// key=value:Effect becomes the tag .../taint/key = value:Effect.
						k, valueEffect, _ := strings.Cut(taint, "=")
						if got := tags["k8s.io/cluster-autoscaler/node-template/taint/"+k]; got != valueEffect {
							t.Errorf("%s: %s node-template taint tag for %s = %q, want %q", name, g.Name, k, got, valueEffect)
						}
					}
					if spot := g.Get("mixedInstancesPolicy", "instancesDistribution", "onDemandPercentageAboveBaseCapacity"); pool.SpotPercent > 0 &&
						(!spot.IsNumber() || int(spot.NumberValue()) != 100-pool.SpotPercent) {
						t.Errorf("%s: %s on-demand above base = %v, want %d", name, g.Name, spot, 100-pool.SpotPercent)
					}
				}
			}
			if want := len(cfg.Workers) * len(cfg.Zones); groups[""] != 0 || len(rec.OfType("aws:autoscaling/group:Group")) != cfg.Etcd.Members+len(cfg.Zones)+want {
				t.Errorf("%s: auto-scaling groups by component %v, want %d worker groups besides etcd and control plane", name, groups, want)
			}
			// The add-ons follow the stack's switches and monitoring choice.
			// The control plane applies them: they are in the add-on set.
			charts := map[string]bool{}
			for _, r := range rec.OfType("aws:s3/bucketObjectv2:BucketObjectv2") {
				if r.String("key") != bootstrap.AddonSetKey {
					continue
				}
				var set addons.Set
				if err := json.Unmarshal([]byte(r.Inputs["content"].SecretValue().Element.StringValue()), &set); err != nil {
					t.Fatalf("%s: the add-on set: %v", name, err)
				}
				for _, step := range set.Steps {
					if step.Release != nil {
						charts[step.Release.Name] = true
					}
				}
			}
			monitoringCharts := map[string][]string{"prometheus": {addons.KubePrometheusStack.Name},
				"cloudwatch": {addons.CloudWatchObservability.Name, addons.PodIdentityWebhook.Name}}[cfg.Addons.Monitoring]
			if slices.ContainsFunc(monitoringCharts, func(c string) bool { return !charts[c] }) || len(charts) != 7+len(monitoringCharts) {
				t.Errorf("%s: charts %v, want 7 add-ons and %v", name, charts, monitoringCharts)
			}
			// Every stateful or foundational resource follows deletionProtection.
			for _, typ := range []string{"aws:ec2/vpc:Vpc", "aws:kms/key:Key", "aws:ebs/volume:Volume", "aws:s3/bucketV2:BucketV2"} {
				for _, r := range rec.OfType(typ) {
					if r.Protect != *cfg.DeletionProtection {
						t.Errorf("%s: %s %s protect=%v, want deletionProtection=%v", name, typ, r.Name, r.Protect, *cfg.DeletionProtection)
					}
				}
			}
		})
	}
}

// The environments differ where they really should.
func TestEnvironmentsDiffer(t *testing.T) {
	stacks := stackFiles(t)
	dev, _ := evaluate(t, stacks["dev"])
	staging, _ := evaluate(t, stacks["staging"])
	prod, rec := evaluate(t, stacks["prod"])

	if n := len(rec.OfType("aws:ec2/natGateway:NatGateway")); n != 3 || prod.Network.SharedNatGateway {
		t.Errorf("prod: %d NAT gateways (shared=%v), want one per zone", n, prod.Network.SharedNatGateway)
	}
	if !*prod.DeletionProtection || !*staging.DeletionProtection || *dev.DeletionProtection {
		t.Errorf("deletion protection dev/staging/prod = %v/%v/%v, want false/true/true", *dev.DeletionProtection, *staging.DeletionProtection, *prod.DeletionProtection)
	}
	if prod.LoadBalancer.Public {
		t.Errorf("prod API is internet-facing; want internal")
	}
	if !(dev.Etcd.BackupRetentionDays < staging.Etcd.BackupRetentionDays && staging.Etcd.BackupRetentionDays < prod.Etcd.BackupRetentionDays) {
		t.Errorf("backup retention dev/staging/prod = %d/%d/%d, want it to grow toward prod",
			dev.Etcd.BackupRetentionDays, staging.Etcd.BackupRetentionDays, prod.Etcd.BackupRetentionDays)
	}
	if dev.ControlPlane.InstanceType == prod.ControlPlane.InstanceType {
		t.Errorf("dev and prod use the same control-plane size %s", dev.ControlPlane.InstanceType)
	}
	if len(prod.NotHA()) != 0 || len(staging.NotHA()) != 0 {
		t.Errorf("prod/staging have non-HA settings: %v %v", prod.NotHA(), staging.NotHA())
	}
	if dev.Addons.Monitoring != "cloudwatch" || prod.Addons.Monitoring != "prometheus" {
		t.Errorf("monitoring dev/prod = %s/%s, want cloudwatch/prometheus", dev.Addons.Monitoring, prod.Addons.Monitoring)
	}
	if len(dev.NotHA()) == 0 {
		t.Errorf("dev shares a NAT gateway, but NotHA finds nothing to flag")
	}
}

// subnetZone is the zone of the subnet with the mock ID id, or "".
func subnetZone(rec *mockrun.Recorder, id string) string {
	for _, s := range rec.OfType("aws:ec2/subnet:Subnet") {
		if s.Name+"-id" == id {
			return s.String("availabilityZone")
		}
	}
	return ""
}

// BenchmarkEvaluateProd is how long the whole prod program takes to
// evaluate under mocks: the offline plan's cost, and a floor for preview.
//
//	go test -run '^$' -bench EvaluateProd ./tests
func BenchmarkEvaluateProd(b *testing.B) {
	raw, err := config.ReadStackFile("../stacks/Pulumi.prod.yaml")
	if err != nil {
		b.Fatal(err)
	}
	resources := 0
	for b.Loop() {
		rec, err := mockrun.Run("kubeha", "prod", raw, program.Stack(raw))
		if err != nil {
			b.Fatal(err)
		}
		resources = len(rec.Resources())
	}
	b.ReportMetric(float64(resources), "resources")
}
