package lab

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"golang.org/x/sys/unix"

	"github.com/kubeha/kubeha/internal/awsdouble"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/pki"
)

// Cloud is AWS as the lab's nodes see it: one host answering every AWS
// endpoint over HTTPS (awsdouble.Cloud, with a certificate from a CA the
// nodes' image trusts) and the VPC's DNS (Route 53's private zones and the
// endpoints' names); a metadata service in every node's namespace; and EBS
// volumes as loop devices that appear in the node they are attached to.
type Cloud struct {
	*awsdouble.Cloud
	// IP is where the endpoints and the VPC's resolver answer.
	IP  string
	CA  *pki.Pair
	DNS *awsdouble.DNSServer
	// Role is the instance profile every node gets credentials for.
	Role string

	dir     string
	servers []*http.Server
	closers []func() error

	mu        sync.Mutex
	instances map[string]*Instance
	loops     map[string]string // volume ID -> loop device
	devices   map[string]string // volume ID -> device name in its instance
	imds      map[*netlab.Host]*metadataService
	// hostLinks are each host's network links before its first instance:
	// what a terminated instance made besides them (a CNI's bridge and
	// VXLAN device) goes with it, as a new EC2 instance starts with none.
	hostLinks map[*netlab.Host][]string
}

// Instance is one running EC2 instance: a node booted from its user-data.
type Instance struct {
	awsdouble.Instance
	Host *netlab.Host
	*Container
}

// StartCloud starts the AWS double on its own host, at ip on network.
func StartCloud(l *netlab.Lab, network, ip, region, dir string) (_ *Cloud, err error) {
	c := &Cloud{Cloud: awsdouble.NewCloud(region), IP: ip, Role: "kubeha-node", dir: dir,
		instances: map[string]*Instance{}, loops: map[string]string{}, devices: map[string]string{}, imds: map[*netlab.Host]*metadataService{},
		hostLinks: map[*netlab.Host][]string{}}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	c.OnAttach, c.OnDetach = c.attach, c.detach
	if c.CA, err = pki.Issue(pki.Spec{CommonName: "kubeha rehearsal AWS CA", IsCA: true, ValidityHours: 24}); err != nil {
		return nil, err
	}
	host, err := l.AddHostOn(network, "aws", ip, nil, nil)
	if err != nil {
		return nil, err
	}
	tlsConfig, err := c.TLSConfig(c.CA)
	if err != nil {
		return nil, err
	}
	listener, err := host.Listen("tcp", ip+":443")
	if err != nil {
		return nil, err
	}
	api := &http.Server{Handler: c.Cloud, TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second}
	c.servers = append(c.servers, api)
	go func() { _ = api.ServeTLS(listener, "", "") }()

	c.DNS = awsdouble.NewDNSServer(c.Cloud, net.ParseIP(ip))
	udp, err := host.ListenPacket("udp", ip+":53")
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, udp.Close)
	go func() { _ = c.DNS.Serve(udp) }()
	tcp, err := host.Listen("tcp", ip+":53")
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, tcp.Close)
	go func() { _ = c.DNS.ServeTCP(tcp) }()
	return c, nil
}

// imageFiles are what the nodes' image carries for this lab: the VPC's
// resolver, and the double's CA among the roots curl and the AWS CLI trust.
func (c *Cloud) imageFiles(rootfs string) (map[string][]byte, error) {
	const bundle = "etc/ssl/certs/ca-certificates.crt"
	roots, err := os.ReadFile(filepath.Join(rootfs, bundle))
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		"etc/resolv.conf": []byte("nameserver " + c.IP + "\n"),
		bundle:            append(roots, c.CA.CertPEM...),
	}, nil
}

// Launch boots a new instance named name on host (its zone's network
// namespace), from rootfs, running userData, as an auto-scaling group
// launches one from its launch template.
func (c *Cloud) Launch(rootfs, name, zone string, host *netlab.Host, userData []byte) (*Instance, error) {
	return c.launch(rootfs, name, zone, host, userData, "", nil, 0)
}

// launch is Launch into an auto-scaling group, if group is not empty,
// whose launch hook holds the instance until its first boot completes it,
// tagged with tags, its metadata answers travelling hopLimit hops.
func (c *Cloud) launch(rootfs, name, zone string, host *netlab.Host, userData []byte, group string, tags map[string]string, hopLimit int) (*Instance, error) {
	id := make([]byte, 9)
	_, _ = rand.Read(id)
	i := &Instance{Host: host, Instance: awsdouble.Instance{ID: "i-" + hex.EncodeToString(id)[:17], Zone: zone, Region: c.Region,
		PrivateIP: host.IP, Hostname: name, Role: c.Role, Tags: tags, PutResponseHopLimit: hopLimit}}
	if err := c.serveIMDS(host, i.Instance); err != nil {
		return nil, err
	}
	c.mu.Lock()
	_, recorded := c.hostLinks[host]
	c.mu.Unlock()
	if !recorded {
		links, err := linkNames(host)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.hostLinks[host] = links
		c.mu.Unlock()
	}
	files, err := c.imageFiles(rootfs)
	if err != nil {
		return nil, err
	}
	c.AddInstance(i.Instance)
	if group != "" {
		c.JoinGroup(i.ID, group, bootstrap.LaunchHook)
	}
	// Each instance has its own root disk: a fresh folder per launch.
	dir := filepath.Join(c.dir, "instances", name+"-"+i.ID)
	if i.Container, err = BootContainer(ContainerSpec{Rootfs: rootfs, Dir: dir, Name: name, Netns: host.NamespacePath(),
		UserData: userData, Files: files}); err != nil {
		c.TerminateInstance(i.ID)
		return nil, err
	}
	c.mu.Lock()
	c.instances[i.ID] = i
	c.mu.Unlock()
	return i, nil
}

// Terminate stops the instance as EC2 terminates one (its volumes are
// detached), waiting up to limit for it to shut down; limit 0 kills it at
// once, as a lost host.
func (c *Cloud) Terminate(i *Instance, limit time.Duration) error {
	var err error
	if limit == 0 {
		err = i.Kill()
	} else {
		err = i.Stop(limit)
	}
	c.TerminateInstance(i.ID)
	c.mu.Lock()
	delete(c.instances, i.ID)
	before := c.hostLinks[i.Host]
	c.mu.Unlock()
	links, lerr := linkNames(i.Host)
	for _, link := range links {
		if !slices.Contains(before, link) {
			lerr = errors.Join(lerr, i.Host.InHost("ip", "link", "del", link))
		}
	}
	return errors.Join(err, lerr)
}

// linkNames are the names of the network links in host.
func linkNames(host *netlab.Host) ([]string, error) {
	out, err := host.Command(nil, "ip", "-o", "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("lab: listing the links of %s: %w", host.IP, err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// "7: cni0: <...>" or "3: eth0@if12: <...>"
		if f := strings.Fields(line); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			names = append(names, name)
		}
	}
	return names, nil
}

// metadataService is one host's instance metadata service: the instance
// it answers for now, and its listener, whose packets leave with the
// instance's hop limit as their TTL.
type metadataService struct {
	current  atomic.Pointer[awsdouble.IMDS]
	listener net.Listener
}

// MetadataGateway is the host's end of the link to its metadata service.
const MetadataGateway = "169.254.0.1"

// serveIMDS points host's metadata service at instance, starting the
// service on the host's first launch. As on EC2, the service is one hop
// from the instance, and answers with a TTL of the instance's hop limit:
// the instance itself gets the answer, but at hop limit 1 a pod, one hop
// further behind the instance's own routing, does not.
func (c *Cloud) serveIMDS(host *netlab.Host, instance awsdouble.Instance) error {
	c.mu.Lock()
	service, ok := c.imds[host]
	if !ok {
		service = &metadataService{}
		c.imds[host] = service
	}
	c.mu.Unlock()
	imds := awsdouble.NewIMDS(instance)
	if c.Cloud != nil { // a metadata service alone has no groups
		imds.TargetLifecycleState = func() string { return c.TargetLifecycleState(instance.ID) }
	}
	service.current.Store(imds)
	if !ok {
		neighbour, err := host.AddNeighbour("md", awsdouble.IMDSAddress, MetadataGateway)
		if err != nil {
			return err
		}
		if service.listener, err = neighbour.Listen("tcp", awsdouble.IMDSAddress+":80"); err != nil {
			return err
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			service.current.Load().ServeHTTP(w, r)
		})}
		c.mu.Lock()
		c.servers = append(c.servers, srv)
		c.mu.Unlock()
		go func() { _ = srv.Serve(service.listener) }()
	}
	return setTTL(service.listener, instance.HopLimit())
}

// RoleCredentials asks the metadata service from inside h, as the AWS
// SDKs do with IMDSv2 (a session token, then the role's credentials), and
// returns the role name it was given, or why it got none within timeout.
func RoleCredentials(h *netlab.Host, timeout time.Duration) (string, error) {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: h.DialContext}}
	base := "http://" + awsdouble.IMDSAddress + "/latest/"
	ask := func(method, path string, header http.Header) (string, error) {
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			return "", err
		}
		req.Header = header
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return string(body), err
	}
	token, err := ask(http.MethodPut, "api/token", http.Header{"X-Aws-Ec2-Metadata-Token-Ttl-Seconds": {"60"}})
	if err != nil {
		return "", err
	}
	withToken := http.Header{"X-Aws-Ec2-Metadata-Token": {token}}
	role, err := ask(http.MethodGet, "meta-data/iam/security-credentials/", withToken)
	if err != nil {
		return "", err
	}
	_, err = ask(http.MethodGet, "meta-data/iam/security-credentials/"+role, withToken)
	return role, err
}

// setTTL makes the TTL of every packet listener's connections send ttl,
// from the handshake on (accepted sockets inherit it).
func setTTL(listener net.Listener, ttl int) error {
	raw, err := listener.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err
	}
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl)
	}); err != nil {
		return err
	}
	return sockErr
}

// attach makes the volume's block device appear in the instance at
// device: a loop device over the volume's file (made on first attach, as
// sparse as a new EBS volume), as a device node in the node's /dev.
func (c *Cloud) attach(volumeID, instanceID, device string) error {
	c.mu.Lock()
	i, running := c.instances[instanceID]
	loop := c.loops[volumeID]
	c.mu.Unlock()
	if !running {
		return fmt.Errorf("lab: instance %s is not running", instanceID)
	}
	if loop == "" {
		v, ok := c.Volume(volumeID)
		if !ok {
			return fmt.Errorf("lab: no volume %s", volumeID)
		}
		file := filepath.Join(c.dir, "volumes", volumeID+".img")
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		err = f.Truncate(int64(v.SizeGiB) << 30)
		f.Close()
		if err != nil {
			return err
		}
		out, err := exec.Command("losetup", "--find", "--show", file).Output()
		if err != nil {
			return fmt.Errorf("lab: losetup %s: %w", file, err)
		}
		loop = strings.TrimSpace(string(out))
		c.mu.Lock()
		c.loops[volumeID] = loop
		c.mu.Unlock()
	}
	var st unix.Stat_t
	if err := unix.Stat(loop, &st); err != nil {
		return err
	}
	pid := i.InitPID()
	if pid == 0 {
		return fmt.Errorf("lab: %s has no running init", instanceID)
	}
	// /proc/<pid>/root is the node's root as its own mounts show it,
	// /dev included.
	c.mu.Lock()
	c.devices[volumeID] = filepath.Base(device)
	c.mu.Unlock()
	node := fmt.Sprintf("/proc/%d/root/dev/%s", pid, filepath.Base(device))
	return unix.Mknod(node, unix.S_IFBLK|0o660, int(st.Rdev))
}

// WipeVolume makes a detached volume blank, as the new volume that
// replaces a lost one is: no file system, no data.
func (c *Cloud) WipeVolume(volumeID string) error {
	if v, ok := c.Volume(volumeID); !ok || v.Attachment != nil {
		return fmt.Errorf("lab: volume %s is missing or still attached", volumeID)
	}
	c.mu.Lock()
	loop := c.loops[volumeID]
	c.mu.Unlock()
	if loop == "" {
		return nil // never attached: blank already
	}
	if out, err := exec.Command("wipefs", "--all", loop).CombinedOutput(); err != nil {
		return fmt.Errorf("lab: wipefs %s: %v: %s", loop, err, out)
	}
	return nil
}

// detach removes the device node from the instance, if it still runs.
func (c *Cloud) detach(volumeID, instanceID string) {
	c.mu.Lock()
	i, running := c.instances[instanceID]
	device := c.devices[volumeID]
	c.mu.Unlock()
	if !running || device == "" {
		return
	}
	if pid := i.InitPID(); pid != 0 {
		_ = os.Remove(fmt.Sprintf("/proc/%d/root/dev/%s", pid, device))
	}
}

// Close stops every instance, the servers and the loop devices.
func (c *Cloud) Close() error {
	var errs []error
	c.mu.Lock()
	instances := make([]*Instance, 0, len(c.instances))
	for _, i := range c.instances {
		instances = append(instances, i)
	}
	c.mu.Unlock()
	for _, i := range instances {
		if err := c.Terminate(i, 30*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range c.servers {
		_ = s.Close()
	}
	for _, close := range c.closers {
		_ = close()
	}
	for _, loop := range c.loops {
		if out, err := exec.Command("losetup", "--detach", loop).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("lab: losetup --detach %s: %v: %s", loop, err, out))
		}
	}
	return errors.Join(errs...)
}

// killCgroup sends SIGKILL to every process in cgroup cg and below it,
// and says how many it found.
func killCgroup(cg string) int {
	killed := 0
	_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, field := range strings.Fields(string(procs)) {
			var pid int
			if _, err := fmt.Sscan(field, &pid); err == nil && unix.Kill(pid, unix.SIGKILL) == nil {
				killed++
			}
		}
		return nil
	})
	return killed
}

// RemoveLeftovers removes what a lab killed before it could clean up left
// of its nodes: nspawn in namespaces named prefix-*, their root mounts,
// loop devices over their volumes, and their cgroups with any process
// still in them. It returns what it removed.
func RemoveLeftovers(prefix string) []string {
	var removed []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p)
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "systemd-nspawn" ||
			!strings.Contains(string(cmdline), "--network-namespace-path=/run/netns/"+prefix+"-") {
			continue
		}
		var pid int
		fmt.Sscanf(p, "/proc/%d/cmdline", &pid)
		c := &Container{cmd: &exec.Cmd{Process: &os.Process{Pid: pid}}}
		if init := c.InitPID(); init != 0 {
			_ = unix.Kill(init, unix.SIGKILL)
		}
		_ = unix.Kill(pid, unix.SIGKILL)
		removed = append(removed, fmt.Sprintf("node process %d", pid))
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.Contains(f[4], "/cloud/instances/") && strings.HasSuffix(f[4], "/merged") {
			if unix.Unmount(f[4], unix.MNT_DETACH) == nil {
				removed = append(removed, "mount "+f[4])
			}
		}
	}
	out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.Contains(f[1], "/cloud/volumes/") {
			if exec.Command("losetup", "--detach", f[0]).Run() == nil {
				removed = append(removed, "loop device "+f[0])
			}
		}
	}
	parents, _ := cgroupParents()
	for _, h := range parents {
		dirs, _ := filepath.Glob(filepath.Join(h, "kubeha-*"))
		for _, d := range dirs {
			// A node whose nspawn alone was killed runs on without it.
			if n := killCgroup(d); n > 0 {
				removed = append(removed, fmt.Sprintf("%d processes of %s", n, d))
			}
			if removeCgroup(d) == nil {
				removed = append(removed, "cgroup "+d)
			}
		}
	}
	return removed
}

// AWSConfig reaches the double as an AWS SDK client on this machine
// would reach AWS: every endpoint is the double, trusted through its CA,
// with credentials it accepts as signed (it checks no signature).
func (c *Cloud) AWSConfig() aws.Config {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.CA.CertPEM)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, c.IP+":443")
		}}
	return aws.Config{Region: c.Region, HTTPClient: &http.Client{Transport: transport, Timeout: 30 * time.Second},
		Credentials: credentials.NewStaticCredentialsProvider("AKIAREHEARSAL", "rehearsal", "")}
}
