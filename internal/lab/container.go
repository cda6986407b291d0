package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubeha/kubeha/internal/netlab"
)

// Container is a node booted as a Debian 12 system container
// (systemd-nspawn, systemd as PID 1) in a netlab host's network namespace.
// Its root is an overlay over the shared rootfs (hack/rootfs.sh), and
// cloud-init runs its user-data from a NoCloud seed, as EC2's does from
// the launch template: nothing is run inside by hand.
type Container struct {
	Name string
	// Root is the container's file system as the machine sees it.
	Root string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	// cgroups are the node's own cgroups: the machine runs no systemd, so
	// without them every node would share nspawn's "payload" cgroup.
	cgroups []string
}

// cgroupParents are this process's own cgroup in each hierarchy.
func cgroupParents() ([]string, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	var parents []string
	for _, line := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		// id:controllers:path, e.g. 4:memory:/sandbox or 0::/ (unified)
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		hierarchy := strings.TrimPrefix(parts[1], "name=")
		if hierarchy == "" {
			hierarchy = "unified"
		}
		parent := filepath.Join(cgroupRoot, hierarchy, parts[2])
		if _, err := os.Stat(parent); err == nil {
			parents = append(parents, parent)
		}
	}
	return parents, nil
}

// labInit is the nodes' PID 1 in the image (hack/rootfs.sh): it makes the
// cgroup hierarchies and /proc/sys writable, then execs systemd.
const labInit = "/usr/local/sbin/kubeha-lab-init"

// cgroupRoot is where the machine mounts its cgroup hierarchies.
const cgroupRoot = "/sys/fs/cgroup"

// nodeCgroups makes the node's own cgroup in every hierarchy this process
// is in, below this process's own (the machine may itself be a sandbox
// with a memory cgroup of its own), and returns them. The machine runs no
// systemd, so without them every node would share nspawn's "payload"
// cgroup, and kubelet could not account for each node apart.
func nodeCgroups(name string) ([]string, error) {
	parents, err := cgroupParents()
	if err != nil {
		return nil, err
	}
	var made []string
	for _, parent := range parents {
		cg := filepath.Join(parent, "kubeha-"+name)
		if err := os.MkdirAll(cg, 0o755); err != nil {
			return made, err
		}
		// A cpuset cgroup takes no process until it has CPUs and memory nodes.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
				if err := os.WriteFile(filepath.Join(cg, f), v, 0o644); err != nil {
					return made, err
				}
			}
		}
		made = append(made, cg)
	}
	return made, nil
}

// ContainerSpec is one node to boot.
type ContainerSpec struct {
	// Rootfs is the image, shared read-only by every node.
	Rootfs string
	// Dir holds the node's own files; Name is its hostname, unique among
	// running nodes.
	Dir, Name string
	// Netns is the network namespace it runs in.
	Netns string
	// UserData is exactly what EC2 hands cloud-init (after base64: gzip
	// stays gzip).
	UserData []byte
	// Files are written into the node's root before it boots, as part of
	// its image: the lab's DNS resolver, a CA it trusts.
	Files map[string][]byte
}

// BootContainer starts a node.
func BootContainer(spec ContainerSpec) (*Container, error) {
	rootfs, dir, name, netns := spec.Rootfs, spec.Dir, spec.Name, spec.Netns
	c := &Container{Name: name, Root: filepath.Join(dir, "merged"), dir: dir, done: make(chan struct{})}
	for _, d := range []string{"upper", "work", "merged", "containerd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	overlay := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", rootfs, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if err := syscall.Mount("overlay", c.Root, "overlay", 0, overlay); err != nil {
		return nil, fmt.Errorf("lab: overlay for %s: %w", name, err)
	}
	if err := c.seed(spec.UserData); err != nil {
		c.release()
		return nil, err
	}
	for path, content := range spec.Files {
		if err := os.WriteFile(filepath.Join(c.Root, path), content, 0o644); err != nil {
			c.release()
			return nil, err
		}
	}
	var joins strings.Builder
	cgroups, err := nodeCgroups(name)
	c.cgroups = cgroups
	if err != nil {
		c.release()
		return nil, err
	}
	for _, cg := range cgroups {
		fmt.Fprintf(&joins, "echo $$ > %q/cgroup.procs && ", cg)
	}
	log, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		c.release()
		return nil, err
	}
	defer log.Close()
	// The shell joins the node's cgroups, then becomes nspawn. What
	// kubelet and containerd need, as in kind's nodes: every capability,
	// the keyring and bpf system calls, /dev/kmsg, and (through the image's
	// labInit, which then becomes systemd) writable cgroups and /proc/sys.
	c.cmd = exec.Command("sh", "-c", joins.String()+`exec "$@"`, "sh", "systemd-nspawn",
		"--register=no", "--keep-unit", "--quiet", "--console=read-only", "--resolv-conf=off",
		"--kill-signal=SIGRTMIN+3", "--capability=all", "--system-call-filter=@keyring bpf", "--bind=/dev/kmsg",
		// containerd's snapshots on the machine's own file system, as on an
		// instance's root volume: overlayfs cannot stack on the node's root.
		"--bind="+filepath.Join(dir, "containerd")+":/var/lib/containerd",
		"--network-namespace-path="+netns, "--directory="+c.Root, "--machine="+name, "--hostname="+name, labInit)
	c.cmd.Stdout, c.cmd.Stderr = log, log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		c.release()
		return nil, err
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// seed writes the NoCloud seed: a unique instance-id (cloud-init runs its
// first-boot modules once per instance) and the user-data as given.
func (c *Container) seed(userData []byte) error {
	dir := filepath.Join(c.Root, "var/lib/cloud/seed/nocloud")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	meta := fmt.Sprintf("instance-id: i-%s-%x\nlocal-hostname: %s\n", c.Name, time.Now().UnixNano(), c.Name)
	if err := os.WriteFile(filepath.Join(dir, "meta-data"), []byte(meta), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "user-data"), userData, 0o600)
}

// CloudInitResult is what cloud-init reports when it has run every stage.
type CloudInitResult struct {
	Datasource string
	Errors     []string
}

// WaitCloudInit waits until cloud-init has finished every stage and
// returns its result, or fails if the container exits or limit passes.
func (c *Container) WaitCloudInit(limit time.Duration) (CloudInitResult, error) {
	// /run is the container's own tmpfs; cloud-init keeps a copy here.
	path := filepath.Join(c.Root, "var/lib/cloud/data/result.json")
	deadline := time.After(limit)
	for {
		if data, err := os.ReadFile(path); err == nil {
			var result struct {
				V1 struct {
					Datasource *string  `json:"datasource"`
					Errors     []string `json:"errors"`
				} `json:"v1"`
			}
			if err := json.Unmarshal(data, &result); err != nil {
				return CloudInitResult{}, fmt.Errorf("lab: %s: %s: %w", c.Name, path, err)
			}
			r := CloudInitResult{Errors: result.V1.Errors}
			if result.V1.Datasource != nil {
				r.Datasource = *result.V1.Datasource
			}
			return r, nil
		}
		select {
		case <-c.done:
			return CloudInitResult{}, fmt.Errorf("lab: %s exited before cloud-init finished:\n%s", c.Name, c.ConsoleTail(20))
		case <-deadline:
			return CloudInitResult{}, fmt.Errorf("lab: cloud-init on %s not done within %s:\n%s", c.Name, limit, c.ConsoleTail(20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// InitPID is the node's PID 1 as the machine sees it (nspawn's child), or
// 0 if it is not running.
func (c *Container) InitPID() int {
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	pid := c.cmd.Process.Pid
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	var child int
	fmt.Sscan(string(children), &child)
	return child
}

// Exec runs a command inside the running node, in all its namespaces, as
// an operator on it would (e.g. `systemctl start` of what a timer starts),
// and returns its output; the error says where and what.
func (c *Container) Exec(args ...string) (string, error) {
	pid := c.InitPID()
	if pid == 0 {
		return "", fmt.Errorf("lab: %s is not running", c.Name)
	}
	nsenter := append([]string{"--target", strconv.Itoa(pid), "--mount", "--uts", "--ipc", "--net", "--pid", "--"}, args...)
	out, err := exec.Command("nsenter", nsenter...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: %s: %s: %v\n%s", c.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// RanUserData is the user-data cloud-init kept for this instance: what it
// was given, byte for byte.
func (c *Container) RanUserData() ([]byte, error) {
	// /var/lib/cloud/instance links to this path, absolutely, so it is
	// read through the instance id rather than the link.
	id, err := os.ReadFile(filepath.Join(c.Root, "var/lib/cloud/data/instance-id"))
	if err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(c.Root, "var/lib/cloud/instances", strings.TrimSpace(string(id)), "user-data.txt"))
}

// ConsoleTail is the last lines the container printed.
func (c *Container) ConsoleTail(lines int) string {
	data, _ := os.ReadFile(filepath.Join(c.dir, "console.log"))
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// Stop halts the node as a shutdown would (SIGTERM to nspawn), kills it if
// it has not stopped within limit, and removes its mount and cgroups. Its
// files under dir stay, for a look afterwards.
func (c *Container) Stop(limit time.Duration) error {
	var errs []error
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(limit):
			netlab.Kill(c.cmd)
			<-c.done
			errs = append(errs, fmt.Errorf("lab: %s did not halt within %s; killed", c.Name, limit))
		}
	}
	return errors.Join(append(errs, c.release())...)
}

// Kill ends the node at once, as a host that lost power: SIGKILL to its
// PID 1 ends every process in it, with no shutdown.
func (c *Container) Kill() error {
	if pid := c.InitPID(); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		netlab.Kill(c.cmd)
		<-c.done
	}
	return c.release()
}

// release unmounts the root and removes the cgroups, once nothing runs in
// them.
func (c *Container) release() error {
	var errs []error
	if err := syscall.Unmount(c.Root, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		errs = append(errs, fmt.Errorf("lab: unmounting %s: %w", c.Root, err))
	}
	for _, cg := range c.cgroups {
		if err := removeCgroup(cg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroup removes a cgroup and the ones systemd made below it,
// deepest first, waiting briefly for the last processes to leave.
func removeCgroup(cg string) error {
	var dirs []string
	_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		for try := 0; try < 50; try++ {
			if err = syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("lab: removing cgroup %s: %w", dirs[i], err)
		}
	}
	return nil
}
