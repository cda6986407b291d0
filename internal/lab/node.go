package lab

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/netlab"
)

// Node is a netlab host running processes of its own, not a booted
// system (the rehearsal's load balancer): its files written at their
// paths, its env file's variables, and the long-running processes started
// on it, by name.
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
