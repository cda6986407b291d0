package rehearsal

// kube-bench on the rehearsal's nodes: the CIS Kubernetes Benchmark's
// automated checks, run where an auditor would run them, inside a
// control-plane node and an etcd node.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/tools"
)

// cisBenchmark is the newest CIS Kubernetes Benchmark kube-bench v0.12.0
// carries; none is published for 1.36 yet.
const cisBenchmark = "cis-1.10"

// benchmarkGaps are the automated checks kubeha fails on purpose or cannot
// pass yet, each with why. A failure not listed here fails the rehearsal.
var benchmarkGaps = map[string]string{
	"1.1.7":  externalEtcd + "no etcd pod specification on a control-plane node",
	"1.1.8":  externalEtcd + "no etcd pod specification on a control-plane node",
	"1.1.11": externalEtcd + "no etcd data directory on a control-plane node",
	"1.1.12": externalEtcd + "no etcd data directory on a control-plane node",
	"2.1":    etcdConfigFile,
	"2.2":    etcdConfigFile,
	"2.4":    etcdConfigFile,
	"2.5":    etcdConfigFile,
}

const (
	externalEtcd   = "etcd runs on its own nodes as a systemd service, not as a static pod: "
	etcdConfigFile = "etcd reads it from its configuration file (--config-file), and CIS 1.10's check looks for a flag only; go test -run TestEtcdConfig ./internal/bootstrap checks it in the file"
)

// BenchmarkReport is kube-bench's verdict on the automated checks.
type BenchmarkReport struct {
	Benchmark string `json:"benchmark"`
	// Passed and Failed count automated checks, by node target.
	Passed map[string]int `json:"passed"`
	Failed map[string]int `json:"failed"`
	// Gaps are the failed checks, "id description: why".
	Gaps []string `json:"gaps"`
}

// benchResult is the part of kube-bench's JSON output the rehearsal reads.
type benchResult struct {
	Controls []struct {
		Type  string `json:"node_type"`
		Tests []struct {
			Results []struct {
				Number string `json:"test_number"`
				Desc   string `json:"test_desc"`
				Scored bool   `json:"scored"`
				Status string `json:"status"`
				Actual string `json:"actual_value"`
				Want   string `json:"expected_result"`
			} `json:"results"`
		} `json:"tests"`
	} `json:"Controls"`
}

// benchmark runs kube-bench's master, controlplane and node targets on
// cp-a and its etcd target on etcd-a. Every automated (scored) check must
// pass or be a listed gap.
func (c *cluster) benchmark() (BenchmarkReport, error) {
	r := BenchmarkReport{Benchmark: cisBenchmark, Passed: map[string]int{}, Failed: map[string]int{}}
	if err := tools.Missing("kube-bench", "kube-bench-cfg"); err != nil {
		return r, err
	}
	dir, err := tools.Dir()
	if err != nil {
		return r, err
	}
	var unexpected []string
	for _, run := range []struct {
		node    *lab.NodeGroup
		targets string
	}{{c.nodes[0], "master,controlplane,node"}, {c.members[0], "etcd"}} {
		result, err := runKubeBench(run.node, dir, run.targets)
		if err != nil {
			return r, err
		}
		for _, control := range result.Controls {
			for _, test := range control.Tests {
				for _, check := range test.Results {
					if !check.Scored {
						continue // manual: CIS leaves it to people
					}
					if check.Status == "PASS" {
						r.Passed[control.Type]++
						continue
					}
					r.Failed[control.Type]++
					why, known := benchmarkGaps[check.Number]
					if !known {
						why = fmt.Sprintf("NOT A KNOWN GAP: found %q, want %s", check.Actual, check.Want)
						unexpected = append(unexpected, check.Number)
					}
					r.Gaps = append(r.Gaps, fmt.Sprintf("%s %s (%s on %s): %s", check.Number, check.Desc, check.Status, run.node.Name, why))
				}
			}
		}
	}
	slices.Sort(r.Gaps)
	if len(unexpected) > 0 {
		return r, fmt.Errorf("kube-bench %s: %d automated checks fail that are not known gaps:\n%s", cisBenchmark, len(unexpected), strings.Join(r.Gaps, "\n"))
	}
	return r, nil
}

// runKubeBench copies kube-bench and its benchmark definitions into the
// node and runs the targets there.
func runKubeBench(g *lab.NodeGroup, toolsDir, targets string) (benchResult, error) {
	var result benchResult
	const inNode = "opt/kube-bench"
	dest := filepath.Join(g.Instance.Root, inNode)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return result, err
	}
	for _, cp := range [][]string{
		{"-L", filepath.Join(toolsDir, "kube-bench"), dest},
		{"-rL", filepath.Join(toolsDir, "kube-bench-cfg"), filepath.Join(dest, "cfg")},
	} {
		if out, err := exec.Command("cp", cp...).CombinedOutput(); err != nil {
			return result, fmt.Errorf("copying kube-bench into %s: %v: %s", g.Name, err, out)
		}
	}
	out := "/" + inNode + "/result.json"
	if _, err := g.Instance.Exec("/"+inNode+"/kube-bench", "run", "--targets", targets, "--benchmark", cisBenchmark,
		"--config-dir", "/"+inNode+"/cfg", "--json", "--outputfile", out); err != nil {
		return result, err
	}
	data, err := os.ReadFile(filepath.Join(g.Instance.Root, out))
	if err != nil {
		return result, err
	}
	if err := json.Unmarshal(data, &result); err != nil {
		return result, fmt.Errorf("kube-bench's output on %s: %w", g.Name, err)
	}
	return result, nil
}
