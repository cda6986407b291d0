package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

// Node is a rendered node in a netlab host: its files written at their
// paths, its env file's variables, which it gives its scripts as systemd
// and cloud-init would, and the long-running processes started on it, by
// name.
type Node struct {
	Name  string
	Host  *netlab.Host
	Env   []string
	procs map[string]*exec.Cmd
}

// NewNode writes a rendered node's files into host.
func NewNode(host *netlab.Host, rendered bootstrap.Node) (*Node, error) {
	if err := rendered.WriteTo(host.Root); err != nil {
		return nil, err
	}
	return &Node{Name: host.Name, Host: host, Env: rendered.Env, procs: map[string]*exec.Cmd{}}, nil
}

// Run runs a command on the node, with its env, and returns its output;
// the error says where and what.
func (n *Node) Run(name string, args ...string) (string, error) {
	out, err := n.Host.Command(n.Env, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Script runs one of the node's rendered scripts.
func (n *Node) Script(name string, args ...string) (string, error) {
	return n.Run(bootstrap.ScriptDir+"/"+name, args...)
}

// Start starts a long-running command on the node as name, logging to
// Log(name); Stop(name) ends it.
func (n *Node) Start(name, command string, args ...string) error {
	cmd := n.Host.Command(n.Env, command, args...)
	log, err := os.OpenFile(n.Log(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the process has its own copy
	cmd.Stdout, cmd.Stderr = log, log
	if err := n.Host.Start(cmd); err != nil {
		return err
	}
	n.procs[name] = cmd
	return nil
}

// Stop kills what Start started under these names, and waits until it
// has exited, so that its ports and files are free.
func (n *Node) Stop(names ...string) {
	for _, name := range names {
		if cmd, ok := n.procs[name]; ok {
			n.Host.Stop(cmd)
			delete(n.procs, name)
		}
	}
}

// Log is the file a started process logs to.
func (n *Node) Log(name string) string { return filepath.Join(n.Host.Root, name+".log") }

// LogTail is the last lines of a started process's log.
func (n *Node) LogTail(name string, lines int) string {
	data, _ := os.ReadFile(n.Log(name))
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// Member is an etcd member in the lab.
type Member struct {
	*Node
	Spec bootstrap.EtcdMember
}

// addNode adds a host on network with the given binds, and writes a
// node's rendered files into it, unless rendering failed.
func addNode(l *netlab.Lab, network, name, ip string, binds []string, hosts map[string]string, rendered bootstrap.Node, err error) (*Node, error) {
	if err != nil {
		return nil, err
	}
	h, err := l.AddHostOn(network, name, ip, binds, hosts)
	if err != nil {
		return nil, err
	}
	return NewNode(h, rendered)
}

// AddEtcdMember lays member p.Member of c out on a new host on network:
// its rendered files, certificates from ca, and the etcd binaries. It
// starts nothing.
func AddEtcdMember(l *netlab.Lab, network, ip string, hosts map[string]string, c bootstrap.EtcdCluster, p bootstrap.EtcdNodeParams, ca *pki.Pair, store string) (*Member, error) {
	rendered, err := c.Node(p)
	n, err := addNode(l, network, p.Member.Name, ip, EtcdBinds, hosts, rendered, err)
	if err != nil {
		return nil, err
	}
	if err := WriteEtcdCerts(n.Host.Root, ca, map[string]pki.Spec{"server": pki.EtcdServer(p.Member.DNSName), "peer": pki.EtcdPeer(p.Member.DNSName)}); err != nil {
		return nil, err
	}
	if err := InstallBinaries(n.Host.Root, store, EtcdBinaries...); err != nil {
		return nil, err
	}
	return &Member{Node: n, Spec: p.Member}, nil
}

// Start runs the rendered etcd-start.sh, as etcd.service does.
func (m *Member) Start() error { return m.Node.Start("etcd", bootstrap.ScriptDir+"/etcd-start.sh") }

// Kill stops etcd at once, as a crash would.
func (m *Member) Kill() { m.Stop("etcd") }

// AddControlPlaneNode lays a control-plane node out on a new host on
// network: its rendered files and kubeadm, then does its boot script's
// first steps, fetching the node's secret from store and filling the
// templates. kubeadm and the components are the caller's to run.
func AddControlPlaneNode(l *netlab.Lab, network, name, ip string, hosts map[string]string, c bootstrap.ControlPlane, p bootstrap.ControlPlaneParams, store string) (*Node, error) {
	rendered, err := c.Node(p)
	n, err := addNode(l, network, name, ip, ControlPlaneBinds, hosts, rendered, err)
	if err != nil {
		return nil, err
	}
	if err := InstallBinaries(n.Host.Root, store, "kubeadm"); err != nil {
		return nil, err
	}
	if _, err := n.Run("bash", "-c", ". "+bootstrap.ScriptDir+"/node-common.sh && fetch_secrets"); err != nil {
		return nil, err
	}
	if _, err := n.Script("node-configure.sh"); err != nil {
		return nil, err
	}
	return n, nil
}

// What `kubeadm init` does on the first node before its API server runs,
// and once it answers.
var (
	KubeadmInitBeforeAPI = [][]string{{"certs", "all"}, {"kubeconfig", "all"}, {"control-plane", "all"}}
	KubeadmInitAfterAPI  = [][]string{{"upload-config", "all"}, {"bootstrap-token"}}
)

// KubeadmInit runs these phases of `kubeadm init` with the rendered
// InitConfiguration.
func (n *Node) KubeadmInit(phases [][]string) error {
	for _, phase := range phases {
		args := append(append([]string{"init", "phase"}, phase...), "--config="+bootstrap.KubeadmInitConfigPath)
		if _, err := n.Run("kubeadm", args...); err != nil {
			return err
		}
	}
	return nil
}

// KubeadmJoinPrepare renders what `kubeadm join --control-plane` does
// before the kubelet starts: certificates, kubeconfigs and static-pod
// manifests, discovering the cluster through the endpoint with the token
// and the pinned CA hash.
func (n *Node) KubeadmJoinPrepare() error {
	_, err := n.Run("kubeadm", "join", "phase", "control-plane-prepare", "all", "--config="+bootstrap.KubeadmJoinConfigPath)
	return err
}

// StartStaticPod runs a control-plane component with exactly the command
// line of the static pod manifest kubeadm wrote, under the node's own
// hostname (Lease holders are named <hostname>_<id>), and restarts it when
// it exits, as the kubelet would: a component that loses its Lease exits
// by design.
func (n *Node) StartStaticPod(component string) error {
	manifest, err := os.ReadFile(filepath.Join(n.Host.Root, bootstrap.StaticPodDir, component+".yaml"))
	if err != nil {
		return err
	}
	var pod struct {
		Spec struct{ Containers []struct{ Command []string } }
	}
	if err := yaml.Unmarshal(manifest, &pod); err != nil {
		return err
	}
	if len(pod.Spec.Containers) == 0 || len(pod.Spec.Containers[0].Command) == 0 {
		return fmt.Errorf("lab: %s's manifest has no command", component)
	}
	command := pod.Spec.Containers[0].Command
	binary, err := tools.Path(command[0])
	if err != nil {
		return err
	}
	supervise := `hostname "$0" && while :; do "$@"; echo "lab: $1 exited ($?); restarting it as the kubelet would" >&2; sleep 1; done`
	return n.Start(component, "unshare", append([]string{"--uts", "/bin/sh", "-c", supervise, n.Name, binary}, command[1:]...)...)
}
