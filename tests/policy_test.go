package tests

import (
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/mockrun"
	"github.com/kubeha/kubeha/internal/oidc"
)

// statement is one IAM policy statement, as kubeha writes them.
type statement struct {
	Sid       string
	Effect    string
	Principal any
	Action    []string
	Resource  any
	Condition map[string]map[string]any
}

// request is one call a node's role might make: an action on a resource
// with the resource's tags; no request tags. userID is the caller's
// ${aws:userid}: "<role ID>:<instance ID>" for an instance's role session.
type request struct {
	action, resource string
	tags             map[string]string
	userID           string
}

// decision is IAM's answer for one role's inline policies: "deny" if a
// Deny statement matches (whatever else allows it), "allow" if only an
// Allow does, "" if none does (denied by default, unless a managed policy
// allows it). A condition this evaluator cannot judge fails the test.
func decision(t *testing.T, statements []statement, r request) string {
	t.Helper()
	out := ""
	for _, s := range statements {
		var resources []string
		for _, resource := range strings1(s.Resource) {
			// IAM fills a policy variable in before it matches.
			resources = append(resources, strings.ReplaceAll(resource, "${aws:userid}", r.userID))
		}
		if !anyMatch(s.Action, r.action) || !anyMatch(resources, r.resource) || !conditionsHold(t, s, r) {
			continue
		}
		if s.Effect == "Deny" {
			return "deny"
		}
		out = "allow"
	}
	return out
}

func strings1(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, e.(string))
		}
		return out
	}
	return nil
}

// anyMatch is IAM's wildcard match (* and ?), case-insensitive for
// actions as IAM is; ARNs here are lower-case.
func anyMatch(patterns []string, value string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(strings.ReplaceAll(p, "/", "\x00")), strings.ToLower(strings.ReplaceAll(value, "/", "\x00"))); ok {
			return true
		}
	}
	return false
}

func conditionsHold(t *testing.T, s statement, r request) bool {
	t.Helper()
	value := func(key string) (string, bool) {
		if tag, ok := strings.CutPrefix(key, "aws:ResourceTag/"); ok {
			v, present := r.tags[tag]
			return v, present
		}
		return "", false // request tags, services, create actions: none on these calls
	}
	for op, keys := range s.Condition {
		for key, want := range keys {
			got, present := value(key)
			switch op {
			case "StringEquals":
				if !present || !anyMatch(strings1(want), got) && got != want {
					return false
				}
			case "Null":
				if (want == "true") != !present {
					return false
				}
			default:
				t.Fatalf("statement %s: condition %s is not one this test can judge", s.Sid, op)
			}
		}
	}
	return true
}

// rolePolicies are each node role's inline policy statements, by role,
// and with addonRoles, each add-on role's (assumed with a service
// account's token) too.
func rolePolicies(t *testing.T, rec *mockrun.Recorder, addonRoles bool) map[string][]statement {
	t.Helper()
	roles := map[string]bool{}
	for _, r := range rec.OfType("aws:iam/role:Role") {
		trust := r.String("assumeRolePolicy")
		if strings.Contains(trust, "ec2.amazonaws.com") || addonRoles && strings.Contains(trust, "sts:AssumeRoleWithWebIdentity") {
			roles[r.Name] = true
		}
	}
	out := map[string][]statement{}
	for _, p := range rec.OfType("aws:iam/rolePolicy:RolePolicy") {
		role := strings.TrimSuffix(p.Name, "-bootstrap")
		if !roles[role] {
			continue
		}
		var doc struct{ Statement []statement }
		if err := json.Unmarshal([]byte(p.String("policy")), &doc); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		out[role] = append(out[role], doc.Statement...)
	}
	if len(out) != len(roles) {
		t.Fatalf("inline policies for %d of %d roles", len(out), len(roles))
	}
	return out
}

// TestNoNodeRoleCanTakeAnEtcdVolume: in every stack, every node role
// (etcd, control plane, each worker pool) and every add-on role is
// explicitly denied detaching, deleting, modifying or retagging an etcd
// member's volume, whatever its other policies allow. Without the deny,
// the EBS CSI driver's role (its rights on the cluster's volumes) would
// be allowed.
func TestNoNodeRoleCanTakeAnEtcdVolume(t *testing.T) {
	for name, file := range stackFiles(t) {
		t.Run(name, func(t *testing.T) {
			cfg, rec := evaluate(t, file)
			volume := "arn:aws:ec2:" + cfg.Region + ":123456789012:volume/vol-0etcd"
			tags := map[string]string{"kubernetes.io/cluster/" + cfg.ClusterName: "owned", bootstrap.EtcdMemberTag: "etcd-a"}
			roles := rolePolicies(t, rec, true)
			allowedWithoutDeny := 0
			for role, statements := range roles {
				var withoutDeny []statement
				for _, s := range statements {
					if s.Effect != "Deny" {
						withoutDeny = append(withoutDeny, s)
					}
				}
				for _, action := range []string{"ec2:DetachVolume", "ec2:DeleteVolume", "ec2:ModifyVolume", "ec2:DeleteTags"} {
					r := request{action: action, resource: volume, tags: tags}
					if got := decision(t, statements, r); got != "deny" {
						t.Errorf("%s: %s on an etcd volume is %q, want an explicit deny", role, action, got)
					}
					if decision(t, withoutDeny, r) == "allow" {
						allowedWithoutDeny++
					}
				}
				// The same role may still use the cluster's other volumes
				// if it could before: the deny is about etcd's only.
				other := request{action: "ec2:DetachVolume", resource: volume, tags: map[string]string{"kubernetes.io/cluster/" + cfg.ClusterName: "owned"}}
				if decision(t, statements, other) == "deny" {
					t.Errorf("%s: denied detaching any of the cluster's volumes, not only etcd's", role)
				}
			}
			if allowedWithoutDeny == 0 {
				t.Error("no role would be allowed to take an etcd volume even without the deny: the test cannot tell")
			}
			t.Logf("%s: %d node and add-on roles; %d role actions on an etcd volume the deny turns from allowed to denied", name, len(roles), allowedWithoutDeny)
		})
	}
}

// assetBucket is the asset bucket's ARN and name.
func assetBucket(t *testing.T, rec *mockrun.Recorder) (arn, name string) {
	t.Helper()
	for _, b := range rec.OfType("aws:s3/bucketV2:BucketV2") {
		if strings.HasSuffix(b.Name, "-assets") {
			return b.Outputs["arn"].StringValue(), b.ID
		}
	}
	t.Fatal("no asset bucket")
	return "", ""
}

// assetURL is an object address in a node's user-data: s3://bucket/key,
// a key not ending in "/" (a folder, such as the node-token one).
var assetURL = regexp.MustCompile(`s3://([a-z0-9.-]+)/([^\s'",#]*[^\s'",#/])(?:[\s'",#]|$)`)

// TestEveryNodeRoleReadsWhatItsUserDataFetches: in every stack, each
// launch template's role may read every asset-bucket object its user-data
// names (binaries, image archives) and write the one it reports to, so no
// node fails its boot on an AccessDenied that only AWS would show.
func TestEveryNodeRoleReadsWhatItsUserDataFetches(t *testing.T) {
	for name, file := range stackFiles(t) {
		t.Run(name, func(t *testing.T) {
			_, rec := evaluate(t, file)
			arn, bucket := assetBucket(t, rec)
			roles := rolePolicies(t, rec, false)
			profiles := map[string]string{}
			for _, p := range rec.OfType("aws:iam/instanceProfile:InstanceProfile") {
				profiles[p.Outputs["arn"].StringValue()] = p.Name
			}
			templates, reads := 0, 0
			for _, lt := range rec.OfType("aws:ec2/launchTemplate:LaunchTemplate") {
				role := profiles[lt.Outputs["iamInstanceProfile"].ObjectValue()["arn"].StringValue()]
				statements, ok := roles[role]
				if !ok {
					t.Fatalf("%s: no node role behind its instance profile", lt.Name)
				}
				templates++
				keys := map[string]bool{}
				for _, content := range renderedFiles(t, lt.String("userData")) {
					for _, m := range assetURL.FindAllStringSubmatch(content, -1) {
						if m[1] == bucket {
							keys[m[2]] = true
						}
					}
				}
				if len(keys) == 0 {
					t.Errorf("%s: its user-data names no asset", lt.Name)
				}
				for key := range keys {
					// The add-on applier writes its status; everything
					// else named there is fetched.
					action := "s3:GetObject"
					if key == bootstrap.AddonStatusKey {
						action = "s3:PutObject"
					}
					reads++
					if decision(t, statements, request{action: action, resource: arn + "/" + key}) != "allow" {
						t.Errorf("%s: role %s may not %s s3://%s/%s, which its user-data names", lt.Name, role, action, bucket, key)
					}
				}
			}
			if templates == 0 {
				t.Fatal("no launch templates")
			}
			t.Logf("%s: %d launch templates, %d named objects, each allowed to its role", name, templates, reads)
		})
	}
}

// TestOnlyAWorkerHandsOverItsOwnJoinToken: in every stack, each worker
// role may write a join token under its own session's user ID only
// (<role ID>:<instance ID>), never under another instance's, and may not
// read or delete any; only the control-plane role may read and delete
// them (its approver takes them), and no role but the workers' writes
// them.
func TestOnlyAWorkerHandsOverItsOwnJoinToken(t *testing.T) {
	for name, file := range stackFiles(t) {
		t.Run(name, func(t *testing.T) {
			_, rec := evaluate(t, file)
			assets, _ := assetBucket(t, rec)
			const me, other = "AROAWORKERROLEID:i-0aaaaaaaaaaaaaaaa", "AROAWORKERROLEID:i-0bbbbbbbbbbbbbbbb"
			key := func(userID string) string { return assets + "/" + bootstrap.NodeTokenPrefix + userID }
			workers, approvers := 0, 0
			for role, statements := range rolePolicies(t, rec, false) {
				allowed := func(action, resource string) bool {
					return decision(t, statements, request{action: action, resource: resource, userID: me}) == "allow"
				}
				putsOwn, putsOther := allowed("s3:PutObject", key(me)), allowed("s3:PutObject", key(other))
				takes := allowed("s3:GetObject", key(other)) && allowed("s3:DeleteObject", key(other))
				switch {
				case strings.Contains(role, "control-plane"):
					approvers++
					if !takes || putsOwn || putsOther {
						t.Errorf("%s: reads and deletes handed-over tokens %v, writes them %v, want only the first", role, takes, putsOwn || putsOther)
					}
				case strings.Contains(role, "etcd"):
					if takes || putsOwn || putsOther {
						t.Errorf("%s: an etcd role touches join tokens", role)
					}
				default:
					workers++
					if !putsOwn || putsOther || allowed("s3:GetObject", key(me)) || allowed("s3:DeleteObject", key(other)) {
						t.Errorf("%s: writes its own token %v, another's %v; want its own only, and no reading or deleting", role, putsOwn, putsOther)
					}
				}
			}
			if workers == 0 || approvers != 1 {
				t.Errorf("%d worker roles, %d control-plane roles; want some and one", workers, approvers)
			}
			t.Logf("%s: %d worker roles write under their own user ID only; %d control-plane role takes the tokens", name, workers, approvers)
		})
	}
}

// TestAddonRolesTrustOnlyTheirServiceAccounts: in every stack, the
// cloud-controller-manager, EBS CSI driver and cluster-autoscaler act on
// AWS with roles of their own, each assumable only through the cluster's
// OIDC provider by its own service account's token for STS; no node role
// may do what they do, and every node's metadata service answers one hop
// only, so no pod reaches a node role.
func TestAddonRolesTrustOnlyTheirServiceAccounts(t *testing.T) {
	for name, file := range stackFiles(t) {
		t.Run(name, func(t *testing.T) {
			cfg, rec := evaluate(t, file)
			theirs := map[string]request{
				addons.CloudControllerManager.Name: {action: "elasticloadbalancing:CreateLoadBalancer", resource: "*"},
				addons.EBSCSIDriver.Name: {action: "ec2:AttachVolume", resource: "arn:aws:ec2:" + cfg.Region + ":123456789012:volume/vol-0pvc",
					tags: map[string]string{"kubernetes.io/cluster/" + cfg.ClusterName: "owned"}},
				// Resizing worker groups; reading groups is every role's
				// that needs it (etcd members find a silent peer's).
				addons.ClusterAutoscaler.Name: {action: "autoscaling:SetDesiredCapacity", resource: "*",
					tags: map[string]string{components.AutoscalerClusterTag(cfg.ClusterName): "owned"}},
			}
			// The CloudWatch agent's rights are AWS's managed policy, on its
			// role only.
			managed := map[string]string{}
			if cfg.Addons.Monitoring == components.MonitoringCloudWatch {
				managed[addons.CloudWatchObservability.Name] = components.CloudWatchAgentPolicy
			}
			// By role: each attachment is named after its role and policy.
			attached := map[string][]string{}
			for _, a := range rec.OfType("aws:iam/rolePolicyAttachment:RolePolicyAttachment") {
				arn := a.String("policyArn")
				role := strings.TrimSuffix(a.Name, "-"+strings.ToLower(path.Base(arn)))
				attached[role] = append(attached[role], arn)
			}
			providers := rec.OfType("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
			if len(providers) != 1 || !slices.Equal(providers[0].Strings("clientIdLists"), []string{oidc.STSAudience}) {
				t.Fatalf("%d OIDC providers, want one for %s", len(providers), oidc.STSAudience)
			}
			provider, issuer := providers[0].Outputs["arn"].StringValue(), providers[0].String("url")
			if !strings.HasPrefix(issuer, "https://"+cfg.ClusterName+"-") || !strings.Contains(issuer, "-oidc-") || !strings.HasSuffix(issuer, ".s3."+cfg.Region+".amazonaws.com") {
				t.Errorf("issuer %s, want the cluster's OIDC bucket", issuer)
			}
			host := strings.TrimPrefix(issuer, "https://")
			all := rolePolicies(t, rec, true)
			nodes := rolePolicies(t, rec, false)
			found := map[string]bool{}
			for _, r := range rec.OfType("aws:iam/role:Role") {
				var trust struct{ Statement []statement }
				if err := json.Unmarshal([]byte(r.String("assumeRolePolicy")), &trust); err != nil {
					t.Fatal(err)
				}
				if _, node := nodes[r.Name]; node {
					continue
				}
				chart := ""
				for _, c := range slices.Concat(slices.Collect(maps.Keys(theirs)), slices.Collect(maps.Keys(managed))) {
					if strings.HasSuffix(r.Name, "-"+c) {
						chart = c
					}
				}
				want := map[string]any{host + ":sub": "system:serviceaccount:" + addons.ServiceAccounts[chart], host + ":aud": oidc.STSAudience}
				s := trust.Statement
				if chart == "" || len(s) != 1 || !slices.Equal(s[0].Action, []string{"sts:AssumeRoleWithWebIdentity"}) ||
					fmt.Sprint(s[0].Principal) != fmt.Sprint(map[string]any{"Federated": provider}) || fmt.Sprint(s[0].Condition["StringEquals"]) != fmt.Sprint(want) {
					t.Errorf("role %s trusts %+v; want only %v through %s", r.Name, s, want, provider)
					continue
				}
				found[chart] = true
				if policy, ok := managed[chart]; ok {
					if !slices.Equal(attached[r.Name], []string{policy}) {
						t.Errorf("role %s has managed policies %v, want %s", r.Name, attached[r.Name], policy)
					}
				} else if decision(t, all[r.Name], theirs[chart]) != "allow" {
					t.Errorf("role %s may not %s", r.Name, theirs[chart].action)
				}
			}
			for chart, policy := range managed {
				if !found[chart] {
					t.Errorf("no role of %s's", chart)
				}
				for _, r := range rec.OfType("aws:iam/role:Role") {
					if _, node := nodes[r.Name]; node && slices.Contains(attached[r.Name], policy) {
						t.Errorf("node role %s has %s, which only %s's role may", r.Name, policy, chart)
					}
				}
			}
			for chart, r := range theirs {
				if !found[chart] {
					t.Errorf("no role of %s's", chart)
				}
				for role, statements := range nodes {
					if decision(t, statements, r) == "allow" {
						t.Errorf("node role %s may %s, which only %s's role may", role, r.action, chart)
					}
				}
			}
			templates := rec.OfType("aws:ec2/launchTemplate:LaunchTemplate")
			for _, lt := range templates {
				if hops := lt.Get("metadataOptions", "httpPutResponseHopLimit").NumberValue(); hops != 1 {
					t.Errorf("%s: metadata hop limit %v, want 1", lt.Name, hops)
				}
			}
			t.Logf("%s: %d add-on roles, each trusting its service account only; no node role does their work; %d launch templates at hop limit 1", name, len(found), len(templates))
		})
	}
}
