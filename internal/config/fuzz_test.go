package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kubeha/kubeha/components"
)

// roundTrip checks what Parse accepted survives being written back and
// read again unchanged, and that a refusal is FieldErrors naming keys.
func roundTrip(t *testing.T, raw map[string]string) {
	args, err := Parse(raw)
	if err != nil {
		var errs components.FieldErrors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("Parse refused with %T %v, want FieldErrors", err, err)
		}
		for _, e := range errs {
			if e.Key == "" {
				t.Fatalf("a refusal names no key: %v", e)
			}
		}
		return
	}
	written, err := Format(args)
	if err != nil {
		t.Fatalf("Format: %v", err)
	}
	again, err := Parse(written)
	if err != nil {
		t.Fatalf("Parse refused what Format wrote from an accepted config: %v\n%v", err, written)
	}
	if !reflect.DeepEqual(args, again) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", args, again)
	}
	_ = args.NotHA()
}

// FuzzParseStackFile feeds arbitrary stack files through the whole reading
// path: parse, write back, parse again, compare.
func FuzzParseStackFile(f *testing.F) {
	stacks, _ := filepath.Glob("../../stacks/Pulumi.*.yaml")
	for _, path := range stacks {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	raw, _ := json.Marshal(validRaw())
	f.Add([]byte("config: " + string(raw)))
	f.Add([]byte("config:\n  kubeha:etcd: {members: 4}\n  kubeha:workers: [{name: a, minPerZone: -1}]\n"))
	f.Add([]byte("config:\n  kubeha:zones: ~\n  kubeha:network: {vpcCidr: 10.0.0.0/33}\n"))
	f.Add([]byte("config:\n  kubeha:api: {allowedCidrs: [0.0.0.0/0, {a: 1}]}\n"))
	f.Add([]byte("config:\n  aws:region: eu-west-1\n  kubeha:environment: dev\n  kubeha:clusterName: ab\n  kubeha:zones: [eu-west-1a, eu-west-1b, eu-west-1c]\n  kubeha:addons: {cni: false, coreDNS: {version: '1.0', values: {a: [1]}}}\n  kubeha:tags: {team: x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := ParseStackYAML(data)
		if err != nil {
			return
		}
		roundTrip(t, raw)
	})
}

// FuzzParseRaw fuzzes the values Pulumi hands the program directly.
func FuzzParseRaw(f *testing.F) {
	f.Add("kubeha:etcd", `{"members":5}`)
	f.Add("kubeha:workers", `[{"name":"x","maxPerZone":1e3}]`)
	f.Add("kubeha:zones", `["eu-west-1a",null]`)
	f.Add("kubeha:network", `{"podCidr":"::/0"}`)
	f.Add("kubeha:api", `{"deregistrationDelaySeconds":0,"hostedZoneId":"Z1","dnsName":"a.b.co"}`)
	f.Add("kubeha:deletionProtection", "False")
	f.Fuzz(func(t *testing.T, key, value string) {
		raw := validRaw()
		raw[key] = value
		roundTrip(t, raw)
	})
}

// The stack files round-trip, each key and value as written.
func TestStackFilesRoundTrip(t *testing.T) {
	stacks, _ := filepath.Glob("../../stacks/Pulumi.*.yaml")
	if len(stacks) != 3 {
		t.Fatalf("%d stack files, want dev, staging and prod", len(stacks))
	}
	for _, path := range stacks {
		raw, err := ReadStackFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(raw); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		roundTrip(t, raw)
	}
}
