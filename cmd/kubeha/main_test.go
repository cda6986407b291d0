package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/mockrun"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestPlanEveryStack(t *testing.T) {
	for _, stack := range []string{"dev", "staging", "prod"} {
		code, out, errOut := runCLI("plan", "--stack", stack, "--stacks", "../../stacks")
		if code != 0 {
			t.Fatalf("plan %s exited %d: %s", stack, code, errOut)
		}
		m := regexp.MustCompile(`Total: (\d+) resources`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("plan %s printed no total:\n%s", stack, out)
		}
		if n, _ := strconv.Atoi(m[1]); n < 20 {
			t.Errorf("plan %s lists %d resources; a 3-zone network alone has more", stack, n)
		}
		for _, want := range []string{"Network (kubeha-" + stack + "-network)", "eu-west-1a", "eu-west-1b", "eu-west-1c", "Resources by component and zone", "aws:ec2/subnet:Subnet"} {
			if !strings.Contains(out, want) {
				t.Errorf("plan %s output lacks %q", stack, want)
			}
		}
		flagged := strings.Contains(out, "NOT HA:") && strings.Contains(out, "kubeha:network.sharedNatGateway=true")
		if flagged != (stack == "dev") {
			t.Errorf("plan %s: shared-NAT NOT HA flag shown = %v, want %v\n%s", stack, flagged, stack == "dev", out)
		}
	}
}

func TestPlanRejectsBadStackFile(t *testing.T) {
	dir := t.TempDir()
	prod, err := os.ReadFile("../../stacks/Pulumi.prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(prod), "members: 3", "members: 4", 1)
	if bad == string(prod) {
		t.Fatal("prod stack has no 'members: 3' to break")
	}
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("plan", "--stack", "bad", "--stacks", dir)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(errOut, "Etcd.Members (kubeha:etcd.members): 4; allowed: 3 or 5") {
		t.Errorf("stderr does not name the key, value and what is allowed:\n%s", errOut)
	}
	if out != "" {
		t.Errorf("a rejected stack printed a plan:\n%s", out)
	}
	if code, _, _ := runCLI("plan", "--stack", "missing", "--stacks", dir); code != 1 {
		t.Errorf("missing stack file: exit %d, want 1", code)
	}
}

// plan --json: every resource with its type, name, parent and inputs, a
// zero that is a real value kept as zero, and no secret shown.
func TestPlanJSON(t *testing.T) {
	dir := t.TempDir()
	dev, err := os.ReadFile("../../stacks/Pulumi.dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	zero := strings.Replace(string(dev), "  kubeha:api:\n", "  kubeha:api:\n    deregistrationDelaySeconds: 0\n", 1)
	if zero == string(dev) {
		t.Fatal("dev stack has no kubeha:api block to change")
	}
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.dev.yaml"), []byte(zero), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("plan", "--stack", "dev", "--stacks", dir, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var plan struct {
		Stack     string `json:"stack"`
		Resources []struct {
			Type, Name, Parent string
			Inputs             map[string]any
		} `json:"resources"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("plan --json is not JSON: %v\n%.300s", err, out)
	}
	if plan.Stack != "dev" || len(plan.Resources) != 249 {
		t.Errorf("stack %q with %d resources, want dev's 249 (the control-plane timers' script archive among them)", plan.Stack, len(plan.Resources))
	}
	targetGroups, secrets, versions := 0, 0, 0
	for _, r := range plan.Resources {
		if r.Type == "" || r.Name == "" || !strings.Contains(r.Parent, "kubeha:index:") {
			t.Errorf("resource %+v lacks a type, name or kubeha parent", r)
		}
		switch r.Type {
		case "aws:lb/targetGroup:TargetGroup":
			targetGroups++
			if d, ok := r.Inputs["deregistrationDelay"].(float64); !ok || d != 0 {
				t.Errorf("target group deregistrationDelay %v, want 0 as the stack sets it", r.Inputs["deregistrationDelay"])
			}
		case "aws:secretsmanager/secretVersion:SecretVersion":
			versions++
			if r.Inputs["secretString"] == "[secret]" {
				secrets++
			}
		}
	}
	// etcd's client secret, one per member, the control plane's and the join secret.
	if targetGroups != 1 || versions != 6 || secrets != versions {
		t.Errorf("%d target groups, %d of %d secret versions shown as [secret]; want 1, and all 6", targetGroups, secrets, versions)
	}
	if strings.Contains(out, "PRIVATE KEY") || mockrun.JoinTokenPattern.MatchString(out) {
		t.Error("plan --json shows a key or the join token")
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"plan"}, {"nope"}, {"docs"}, {"rehearse"}, {"rehearse", "--stack", "dev", "extra"}} {
		if code, _, errOut := runCLI(args...); code != 2 || !strings.Contains(errOut, "usage") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and the usage", args, code, errOut)
		}
	}
}

func TestDocsRewritesReference(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	stale := "intro\n<!-- config-reference:start (make docs writes this; do not edit) -->\nold table\n<!-- config-reference:end -->\noutro\n"
	if err := os.WriteFile(path, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI("docs", path); code != 0 {
		t.Fatalf("docs exited %d: %s", code, errOut)
	}
	got, _ := os.ReadFile(path)
	if strings.Contains(string(got), "old table") || !strings.Contains(string(got), "`kubeha:etcd.members`") || !strings.HasSuffix(string(got), "outro\n") {
		t.Errorf("docs did not replace the table in place:\n%s", got)
	}
}
