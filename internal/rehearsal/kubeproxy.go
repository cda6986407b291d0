package rehearsal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// KubeProxy is kube-proxy as kubeadm runs it on each control-plane node:
// Ready, how often its container restarted, and whether the node's
// iptables holds the kubernetes Service it programmed.
type KubeProxy struct {
	Ready      map[string]bool `json:"ready"`
	Restarts   map[string]int  `json:"restarts"`
	Programmed map[string]bool `json:"programmed"`
	// ReadySeconds is from the check's start until every one was Ready
	// with the Service programmed.
	ReadySeconds float64 `json:"readySeconds"`
}

// kubernetesServiceRule is the comment kube-proxy's iptables rules carry
// for the API's own Service.
const kubernetesServiceRule = `"default/kubernetes:https`

// checkKubeProxy waits until kube-proxy is Ready on every control-plane
// node and has programmed the kubernetes Service into the node's iptables.
func (c *cluster) checkKubeProxy() (KubeProxy, error) {
	k := KubeProxy{Ready: map[string]bool{}, Restarts: map[string]int{}, Programmed: map[string]bool{}}
	took, err := c.waitFor("kube-proxy Ready with the kubernetes Service programmed on every control-plane node", 3*time.Minute, func() error {
		code, body, err := c.lbAdmin.Do(http.MethodGet, "/api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-proxy", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("HTTP %d %.200s (%v)", code, body, err)
		}
		var pods struct {
			Items []struct {
				Spec   struct{ NodeName string }
				Status struct {
					ContainerStatuses []struct {
						Ready        bool
						RestartCount int
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(body), &pods); err != nil {
			return err
		}
		for _, p := range pods.Items {
			for _, s := range p.Status.ContainerStatuses {
				k.Ready[p.Spec.NodeName], k.Restarts[p.Spec.NodeName] = s.Ready, s.RestartCount
			}
		}
		var missing []string
		for i, n := range c.nodes {
			name := nodeName(i)
			if n.Instance != nil && !k.Programmed[name] {
				rules, err := n.Instance.Exec("/usr/sbin/iptables-save", "-t", "nat")
				k.Programmed[name] = err == nil && strings.Contains(rules, kubernetesServiceRule)
			}
			if !k.Ready[name] || !k.Programmed[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not yet on %v: ready %v, restarts %v, programmed %v", missing, k.Ready, k.Restarts, k.Programmed)
		}
		return nil
	})
	k.ReadySeconds = took.Seconds()
	return k, err
}
