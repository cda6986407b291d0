package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseStackFile feeds arbitrary stack files through the whole reading
// path. Whatever the input, it must return a value or an error, never panic,
// and an accepted config must pass validation again unchanged.
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
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := ParseStackYAML(data)
		if err != nil {
			return
		}
		s, err := Parse(raw)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		_ = s.NotHA()
	})
}

// FuzzParseRaw fuzzes the values Pulumi hands the program directly.
func FuzzParseRaw(f *testing.F) {
	f.Add("kubeha:etcd", `{"members":5}`)
	f.Add("kubeha:workers", `[{"name":"x","maxPerZone":1e3}]`)
	f.Add("kubeha:zones", `["eu-west-1a",null]`)
	f.Add("kubeha:network", `{"podCidr":"::/0"}`)
	f.Fuzz(func(t *testing.T, key, value string) {
		raw := validRaw()
		raw[key] = value
		if s, err := Parse(raw); err == nil {
			if err := s.Validate(); err != nil {
				t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
			}
		}
	})
}
