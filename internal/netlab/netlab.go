// Package netlab builds small networks of hosts on one Linux machine for
// kubeha's local tests and rehearsal: each host is a network namespace with
// its own address on a shared bridge, and sees its own copies of chosen
// folders (/etc/etcd, /var/lib/etcd, ...) through bind mounts, so rendered
// node files are used at their real paths. It needs root and iproute2.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Available says why the lab cannot run here, or "" when it can.
func Available() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces and bind mounts)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs iproute2's ip command"
	}
	return ""
}

// Lab is a set of hosts on one bridge. Close removes everything it made.
type Lab struct {
	prefix string
	dir    string
	hub    string
	mu     sync.Mutex
	hosts  []*Host
	// running maps each started command to a channel closed when it exits.
	running map[*exec.Cmd]chan struct{}
	// machineLink is the machine's end of ConnectMachine's link.
	machineLink string
}

// Host is one network namespace.
type Host struct {
	Name string
	IP   string
	// Root holds the host's own folders; Root/etc/etcd appears as /etc/etcd.
	Root string
	ns   string
	veth string
	lab  *Lab
	// binds are the absolute paths the host sees from Root.
	binds []string
}

// New makes an empty lab. prefix keeps its namespaces apart from others';
// dir is where hosts keep their files.
func New(prefix, dir string) (*Lab, error) {
	if why := Available(); why != "" {
		return nil, errors.New("netlab: " + why)
	}
	if len(prefix) > 8 {
		return nil, fmt.Errorf("netlab: prefix %q is longer than 8 characters (interface names are limited to 15)", prefix)
	}
	l := &Lab{prefix: prefix, dir: dir, hub: prefix + "-hub", running: map[*exec.Cmd]chan struct{}{}}
	if err := l.clearLeftovers(); err != nil {
		return nil, err
	}
	if err := l.run("ip", "netns", "add", l.hub); err != nil {
		return nil, err
	}
	return l, nil
}

// AddNetwork adds a routed network: a bridge named name in the hub, which
// routes between its networks, with gateway (a.b.c.1) as the hub's
// address on it. Hosts on it default-route through the hub, as a subnet's
// instances do through the VPC router.
func (l *Lab) AddNetwork(name, gateway string) error {
	for _, step := range [][]string{
		{"link", "add", name, "type", "bridge"},
		{"addr", "add", gateway + "/24", "dev", name},
		{"link", "set", name, "up"},
	} {
		if err := l.inHub(step...); err != nil {
			return err
		}
	}
	return l.run("ip", "netns", "exec", l.hub, "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

// ConnectMachine links the machine itself to the hub: the machine gets
// machineIP and reaches every lab network (10.0.0.0/8 addresses under
// labCIDR) through the hub, so a process outside the lab can be a client.
func (l *Lab) ConnectMachine(machineIP, hubIP, labCIDR string) error {
	outside, inside := l.prefix+"-m", l.prefix+"-mh"
	steps := [][]string{
		{"ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", l.hub},
		{"ip", "addr", "add", machineIP + "/30", "dev", outside},
		{"ip", "link", "set", outside, "up"},
		{"ip", "-n", l.hub, "addr", "add", hubIP + "/30", "dev", inside},
		{"ip", "-n", l.hub, "link", "set", inside, "up"},
		{"ip", "route", "add", labCIDR, "via", hubIP},
	}
	for _, s := range steps {
		if err := l.run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.machineLink = outside
	l.mu.Unlock()
	return nil
}

// InHost runs a command in a host's network namespace only.
func (h *Host) InHost(args ...string) error {
	return h.lab.run("ip", append([]string{"netns", "exec", h.ns}, args...)...)
}

// AddHostOn adds a host with address ip/24 on the given network (bridge)
// of the hub. binds lists the absolute folders it gets its own copy of.
// hosts is written as its /etc/hosts.
func (l *Lab) AddHostOn(network, name, ip string, binds []string, hosts map[string]string) (*Host, error) {
	h := &Host{Name: name, IP: ip, Root: filepath.Join(l.dir, name), ns: l.prefix + "-" + name, lab: l, binds: binds}
	l.mu.Lock()
	h.veth = fmt.Sprintf("v%s%d", l.prefix, len(l.hosts))
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	for _, b := range binds {
		if err := os.MkdirAll(filepath.Join(h.Root, b), 0o755); err != nil {
			return nil, err
		}
		// The mount point must exist on the machine; it stays empty there.
		if err := os.MkdirAll(b, 0o755); err != nil {
			return nil, err
		}
	}
	var lines []string
	lines = append(lines, "127.0.0.1 localhost")
	for _, n := range slices.Sorted(maps.Keys(hosts)) {
		lines = append(lines, hosts[n]+" "+n)
	}
	if err := os.MkdirAll("/etc/netns/"+h.ns, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile("/etc/netns/"+h.ns+"/hosts", []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"ip", "netns", "add", h.ns},
		{"ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns},
		{"ip", "link", "set", h.veth, "netns", l.hub},
		{"ip", "-n", l.hub, "link", "set", h.veth, "master", network, "up"},
		{"ip", "-n", h.ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"ip", "-n", h.ns, "link", "set", "eth0", "up"},
		{"ip", "-n", h.ns, "link", "set", "lo", "up"},
		// A default route, as every instance has: kubeadm picks the
		// address of its interface as the node's address.
		{"ip", "-n", h.ns, "route", "add", "default", "via", ip[:strings.LastIndex(ip, ".")] + ".1"},
	}
	for _, s := range steps {
		if err := l.run(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// AddNeighbour adds a namespace one hop from h, alone on a link to it,
// with address ip (h's end is gateway): a service outside the host that
// it reaches on its own link (EC2's metadata service), or a process inside
// it behind its own network namespace (a pod). Its traffic goes through
// h, which routes it (and must forward, as a node does for its pods).
func (h *Host) AddNeighbour(name, ip, gateway string) (*Host, error) {
	l := h.lab
	n := &Host{Name: h.Name + "-" + name, IP: ip, ns: h.ns + "-" + name, lab: l}
	l.mu.Lock()
	n.veth = fmt.Sprintf("n%s%d", l.prefix, len(l.hosts))
	l.hosts = append(l.hosts, n)
	l.mu.Unlock()
	steps := [][]string{
		{"ip", "netns", "add", n.ns},
		{"ip", "link", "add", n.veth, "netns", h.ns, "type", "veth", "peer", "name", "eth0", "netns", n.ns},
		{"ip", "-n", h.ns, "addr", "add", gateway, "peer", ip, "dev", n.veth},
		{"ip", "-n", h.ns, "link", "set", n.veth, "up"},
		{"ip", "-n", n.ns, "addr", "add", ip, "peer", gateway, "dev", "eth0"},
		{"ip", "-n", n.ns, "link", "set", "eth0", "up"},
		{"ip", "-n", n.ns, "link", "set", "lo", "up"},
		{"ip", "-n", n.ns, "route", "add", "default", "via", gateway},
	}
	for _, s := range steps {
		if err := l.run(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Disconnect cuts the host off the network, as if its zone failed;
// Reconnect undoes it.
func (h *Host) Disconnect() error {
	return h.lab.run("ip", "-n", h.lab.hub, "link", "set", h.veth, "down")
}
func (h *Host) Reconnect() error {
	return h.lab.run("ip", "-n", h.lab.hub, "link", "set", h.veth, "up")
}

// Command runs name inside the host, with its folders bound in place.
// `ip netns exec` gives every command its own mount namespace, so the binds
// are made again for each command and never leak onto the machine.
func (h *Host) Command(env []string, name string, args ...string) *exec.Cmd {
	var script strings.Builder
	for _, b := range h.binds {
		fmt.Fprintf(&script, "mount --bind %q %q && ", filepath.Join(h.Root, b), b)
	}
	script.WriteString(`exec "$@"`)
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, "sh", "-c", script.String(), "sh", name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// DialContext connects to addr (an IP address and port: names would be
// resolved with the machine's /etc/hosts) from inside the host's network
// namespace, so that a client in this process reaches the lab as the host
// does, with no route from the machine. It is an http.Transport's
// DialContext.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := h.inNamespace(func() (err error) {
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil && conn != nil {
		conn.Close()
		return nil, err
	}
	return conn, err
}

// Listen opens a listener inside the host's network namespace: a server in
// this process that the host reaches at addr as a service on its own link
// (the instance metadata service, say), with no route from elsewhere.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	// Plain TCP, not Go's default Multipath TCP, whose sockets take no IP
	// options (the metadata service sets the TTL of its answers).
	var config net.ListenConfig
	config.SetMultipathTCP(false)
	err := h.inNamespace(func() (err error) {
		l, err = config.Listen(context.Background(), network, addr)
		return err
	})
	if err != nil && l != nil {
		l.Close()
		return nil, err
	}
	return l, err
}

// ListenPacket is Listen for datagrams (a DNS server, say).
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := h.inNamespace(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil && c != nil {
		c.Close()
		return nil, err
	}
	return c, err
}

var errNamespaceStuck = errors.New("netlab: cannot return to the machine's network namespace")

// inNamespace runs fn on an OS thread inside the host's network namespace.
// A socket keeps the namespace it was made in, so the thread goes back at
// once; if it cannot, it stays locked and ends with its goroutine rather
// than run other goroutines in the wrong namespace.
func (h *Host) inNamespace(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := h.enterAndRun(fn)
		if errors.Is(err, errNamespaceStuck) {
			done <- err
			return
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}

func (h *Host) enterAndRun(fn func() error) error {
	machine, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer machine.Close()
	target, err := os.Open("/run/netns/" + h.ns)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := setns(target); err != nil {
		return fmt.Errorf("netlab: entering %s: %w", h.ns, err)
	}
	fnErr := fn()
	if err := setns(machine); err != nil {
		return fmt.Errorf("%w: %v", errNamespaceStuck, err)
	}
	return fnErr
}

func setns(ns *os.File) error { return unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET) }

// Start starts a long-running command in the host; Close kills it if
// nothing else has.
func (h *Host) Start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	h.lab.mu.Lock()
	h.lab.running[cmd] = exited
	h.lab.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		h.lab.mu.Lock()
		delete(h.lab.running, cmd)
		h.lab.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Stop kills a command Start started, with its whole process group, and
// returns once it has exited, so its ports and files are free.
func (h *Host) Stop(cmd *exec.Cmd) {
	h.lab.mu.Lock()
	exited, ok := h.lab.running[cmd]
	h.lab.mu.Unlock()
	Kill(cmd)
	if ok {
		<-exited
	}
}

// Kill sends SIGKILL to a started command's whole process group.
func Kill(cmd *exec.Cmd) {
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Close kills every command still running and removes the namespaces and
// their hosts files. It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	for cmd := range l.running {
		Kill(cmd)
	}
	hosts := l.hosts
	l.hosts = nil
	machineLink := l.machineLink
	l.machineLink = ""
	l.mu.Unlock()
	var errs []error
	for _, h := range hosts {
		if err := exec.Command("ip", "netns", "del", h.ns).Run(); err != nil && nsExists(h.ns) {
			errs = append(errs, fmt.Errorf("netlab: removing %s: %w", h.ns, err))
		}
		os.RemoveAll("/etc/netns/" + h.ns)
	}
	if machineLink != "" {
		// Deleting one end of a veth deletes both, and the route with it.
		if err := exec.Command("ip", "link", "del", machineLink).Run(); err != nil && linkExists(machineLink) {
			errs = append(errs, fmt.Errorf("netlab: removing %s: %w", machineLink, err))
		}
	}
	if nsExists(l.hub) {
		if err := exec.Command("ip", "netns", "del", l.hub).Run(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// clearLeftovers removes the namespaces a run killed before Close left
// under this prefix, so the next run starts. A namespace a process still
// lives in belongs to a run that is going on: that is refused, not broken.
func (l *Lab) clearLeftovers() error {
	left := l.Namespaces()
	for _, ns := range left {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			return fmt.Errorf("netlab: listing the processes in %s: %w", ns, err)
		}
		if pids := strings.Fields(string(out)); len(pids) > 0 {
			return fmt.Errorf("netlab: namespace %s, of a lab with prefix %q, still has processes %v: another run is using the prefix; stop it, or kill them and run `ip netns del %s`", ns, l.prefix, pids, ns)
		}
	}
	var errs []error
	for _, ns := range left {
		if err := exec.Command("ip", "netns", "del", ns).Run(); err != nil && nsExists(ns) {
			errs = append(errs, fmt.Errorf("netlab: removing the leftover %s: %w", ns, err))
		}
		os.RemoveAll("/etc/netns/" + ns)
	}
	// ConnectMachine's link goes with the hub; this catches one whose hub
	// was already gone.
	if machineLink := l.prefix + "-m"; linkExists(machineLink) {
		if err := exec.Command("ip", "link", "del", machineLink).Run(); err != nil && linkExists(machineLink) {
			errs = append(errs, fmt.Errorf("netlab: removing the leftover %s: %w", machineLink, err))
		}
	}
	return errors.Join(errs...)
}

// Namespaces lists the lab's namespaces that still exist.
func (l *Lab) Namespaces() []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], l.prefix+"-") {
			found = append(found, f[0])
		}
	}
	return found
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

func nsExists(ns string) bool {
	_, err := os.Stat("/run/netns/" + ns)
	return err == nil
}

func (l *Lab) inHub(args ...string) error {
	return l.run("ip", append([]string{"-n", l.hub}, args...)...)
}

func (l *Lab) run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: %s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NamespacePath is the host's network namespace, for a process that joins
// it by path (systemd-nspawn --network-namespace-path).
func (h *Host) NamespacePath() string { return "/run/netns/" + h.ns }
