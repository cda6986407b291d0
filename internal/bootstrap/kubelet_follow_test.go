package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// followNode is a control-plane node's folders for kubelet-follow.sh, with
// fakes that log every systemctl call with which kubelet binary is in
// place and whether the API server's manifest is.
type followNode struct {
	dir, bin, manifests, calls, aws string
}

// runFollow runs kubelet-follow.sh on node host of three control-plane
// nodes, cp-a, cp-b and cp-c, all with the older kubelet, the record saying
// recorded, ready API servers running the node's release and older ones
// the release before; prepare sets up the node's folders first. The fake
// AWS CLI logs each call to n.aws.
func runFollow(t *testing.T, host, recorded string, ready, older int, prepare func(n followNode)) (followNode, int, string) {
	t.Helper()
	dir := t.TempDir()
	n := followNode{dir: dir, bin: filepath.Join(dir, "bin"), manifests: filepath.Join(dir, "manifests"), calls: filepath.Join(dir, "calls"), aws: filepath.Join(dir, "aws")}
	for _, d := range []string{n.bin, n.manifests} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeText(t, filepath.Join(n.bin, "kubelet"), "v1.35.8")
	writeText(t, filepath.Join(n.bin, "kubelet-v1.36.3"), "v1.36.3")
	writeText(t, filepath.Join(n.manifests, "kube-apiserver.yaml"), "apiserver")
	prepare(n)
	var nodes, pods []string
	for _, name := range []string{"cp-a", "cp-b", "cp-c"} {
		nodes = append(nodes, `{"metadata":{"name":"`+name+`"},"status":{"nodeInfo":{"kubeletVersion":"v1.35.8"}}}`)
	}
	pod := func(version string) string {
		return `{"spec":{"containers":[{"image":"registry.k8s.io/kube-apiserver:` + version + `"}]},"status":{"conditions":[{"type":"Ready","status":"True"}]}}`
	}
	for i := 0; i < ready; i++ {
		pods = append(pods, pod("v1.36.3"))
	}
	for i := 0; i < older; i++ {
		pods = append(pods, pod("v1.35.8"))
	}
	fakes := map[string]string{
		"hostname": "#!/bin/sh\necho " + host + "\n",
		"aws":      "#!/bin/sh\necho \"$*\" >>" + n.aws + "\necho " + recorded + "\n",
		"kubectl": `#!/bin/bash
case "$*" in
  *" get nodes "*) echo '{"items":[` + strings.Join(nodes, ",") + `]}' ;;
  *" get pods "*) echo '{"items":[` + strings.Join(pods, ",") + `]}' ;;
  *) exit 1 ;;
esac
`,
		// pgrep -f "^<component> ": running while its manifest is there.
		"pgrep": `#!/bin/bash
c=${2#^}; c=${c% }
[ -f "` + n.manifests + `/$c.yaml" ]
`,
		"systemctl": `#!/bin/bash
where=out; [ -f "` + n.manifests + `/kube-apiserver.yaml" ] && where=in
echo "$* kubelet=$(cat "` + n.bin + `/kubelet") apiserver=$where" >>"` + n.calls + `"
`,
	}
	bin := scriptDir(t, fakes, "kubelet-follow.sh", "node-common.sh", "credentials.sh", "kubernetes-node.sh", "imds.sh", "assets.sh")
	cmd := exec.Command("bash", filepath.Join(bin, "kubelet-follow.sh"))
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "ROLE=control-plane", "ZONE=eu-west-1a", "BIN_DIR=" + n.bin,
		"STATIC_POD_DIR=" + n.manifests, "KUBERNETES_VERSION=v1.36.3", "KUBELET_HELD_VERSION=v1.35.8",
		"VERSION_PARAMETER=/kubeha/c1/kubernetes-version", "CONTROL_PLANE_LABEL=" + ControlPlaneLabel,
		"ADMIN_KUBECONFIG=/dev/null", "LOCAL_API_URL=https://127.0.0.1:6443", "API_ENDPOINT=api.c1.example"}
	code, out := runScript(t, cmd)
	return n, code, out
}

func writeText(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (n followNode) read(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestKubeletFollowSwapsWithTheAPIServerStoppedFirst: on its turn, with
// every API server ready, a node stops its API server under the old
// kubelet (its manifest taken away), and only then stops the kubelet,
// swaps the binary, puts the manifest back and starts the new kubelet.
func TestKubeletFollowSwapsWithTheAPIServerStoppedFirst(t *testing.T) {
	n, code, out := runFollow(t, "cp-a", "v1.36.3", 3, 0, func(followNode) {})
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	want := "stop kubelet kubelet=v1.35.8 apiserver=out\nstart kubelet kubelet=v1.36.3 apiserver=in"
	if got := n.read(t, n.calls); got != want {
		t.Errorf("systemctl calls:\n%s\nwant:\n%s\n%s", got, want, out)
	}
	if _, err := os.Stat(filepath.Join(n.bin, "kubelet-v1.36.3")); !os.IsNotExist(err) {
		t.Errorf("the release's own kubelet is still beside the one running: %v", err)
	}
	t.Logf("MEASURED: systemctl calls %q", n.read(t, n.calls))
}

// TestKubeletFollowWaitsItsTurn: nothing changes while an API server runs
// the older release (and the record is not read then: it cannot have
// moved), while the record is behind, while a node named before it runs
// the older kubelet (nor is the record read then: each read is an AWS CLI
// start, every 15 s on each node), or while an API server is not ready
// (one stopped for its node's swap has no pod).
func TestKubeletFollowWaitsItsTurn(t *testing.T) {
	for _, c := range []struct {
		why, host, recorded string
		ready, older        int
		log                 string
		asks                int
	}{
		{"an API server runs the older release", "cp-a", "v1.35.8", 2, 1, "", 0},
		{"the record is behind", "cp-a", "v1.35.8", 3, 0, "", 1},
		{"cp-a's turn comes first", "cp-b", "v1.36.3", 3, 0, "waits for cp-a's turn", 0},
		{"an API server is not ready", "cp-a", "v1.36.3", 2, 0, "(2 are)", 1},
	} {
		t.Run(c.why, func(t *testing.T) {
			n, code, out := runFollow(t, c.host, c.recorded, c.ready, c.older, func(followNode) {})
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			if calls := n.read(t, n.calls); calls != "" {
				t.Errorf("systemctl called: %s", calls)
			}
			if got := n.read(t, filepath.Join(n.bin, "kubelet")); got != "v1.35.8" {
				t.Errorf("kubelet is %s", got)
			}
			if !strings.Contains(out, c.log) {
				t.Errorf("output %q, want %q in it", out, c.log)
			}
			if asks := n.read(t, n.aws); strings.Count(asks, "ssm get-parameter") != c.asks || strings.Count(asks, "\n") != max(c.asks-1, 0) {
				t.Errorf("AWS calls %q, want %d read(s) of the record and nothing else", asks, c.asks)
			}
		})
	}
}

// TestKubeletFollowPutsTheAPIServerBackAfterAStoppedRun: a run stopped
// with the API server's manifest set aside, its kubelet already swapped,
// puts the manifest back and does nothing else.
func TestKubeletFollowPutsTheAPIServerBackAfterAStoppedRun(t *testing.T) {
	n, code, out := runFollow(t, "cp-a", "v1.36.3", 2, 0, func(n followNode) {
		held := n.manifests + ".held"
		if err := os.MkdirAll(held, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(n.manifests, "kube-apiserver.yaml"), filepath.Join(held, "kube-apiserver.yaml")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(n.bin, "kubelet-v1.36.3"), filepath.Join(n.bin, "kubelet")); err != nil {
			t.Fatal(err)
		}
	})
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if got := n.read(t, filepath.Join(n.manifests, "kube-apiserver.yaml")); got != "apiserver" {
		t.Errorf("the API server's manifest is %q, want it back", got)
	}
	if calls := n.read(t, n.calls); calls != "" {
		t.Errorf("systemctl called: %s", calls)
	}
}
