package lab

import (
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// libDir is where Debian keeps shared libraries (/lib is a link to
// /usr/lib), and the dynamic loader looks without a cache.
const libDir = "usr/lib/x86_64-linux-gnu"

// iptablesBinary is Debian's iptables in nftables mode, the one its
// alternatives pick; the commands kube-proxy runs link to it.
const iptablesBinary = "usr/sbin/xtables-nft-multi"

var iptablesCommands = []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"}

// IptablesFiles are the files of iptables from a Debian root filesystem,
// for an image with no libc of its own: the binary and the commands
// linked to it, its extensions, every shared library they need (and the
// loader), and the tables they read names from.
func IptablesFiles(rootfs string) ([]layerEntry, error) {
	extensions, err := filepath.Glob(filepath.Join(rootfs, libDir, "xtables", "*.so"))
	if err != nil || len(extensions) == 0 {
		return nil, fmt.Errorf("lab: no iptables extensions in %s (%v): is iptables installed there?", filepath.Join(rootfs, libDir, "xtables"), err)
	}
	objects := []string{iptablesBinary}
	for _, ext := range extensions {
		objects = append(objects, strings.TrimPrefix(ext, filepath.Clean(rootfs)+"/"))
	}
	files, err := debianFiles(rootfs, objects...)
	if err != nil {
		return nil, err
	}
	for _, cmd := range iptablesCommands {
		files = append(files, layerEntry{path: "usr/sbin/" + cmd, link: "xtables-nft-multi"})
	}
	for _, table := range []string{"etc/protocols", "etc/ethertypes"} {
		data, err := os.ReadFile(filepath.Join(rootfs, table))
		if err != nil {
			return nil, err
		}
		files = append(files, layerEntry{path: table, data: data, mode: 0o644})
	}
	slices.SortStableFunc(files, func(a, b layerEntry) int { return strings.Compare(a.path, b.path) })
	return files, nil
}

// CopyFiles are Debian's cp with what it needs, for an image whose
// upstream counterpart has a shell's cp: flannel's CNI plugin image, whose
// init container the chart runs as `cp -f /flannel /opt/cni/bin/flannel`.
func CopyFiles(rootfs string) ([]layerEntry, error) {
	return debianFiles(rootfs, "usr/bin/cp")
}

// debianFiles are the ELF objects (paths relative to the Debian root
// filesystem), every shared library they need, and the loader where it
// is asked for.
func debianFiles(rootfs string, objects ...string) ([]layerEntry, error) {
	var files []layerEntry
	seen := map[string]bool{}
	for len(objects) > 0 {
		obj := objects[0]
		objects = objects[1:]
		if seen[obj] {
			continue
		}
		seen[obj] = true
		data, err := os.ReadFile(filepath.Join(rootfs, obj))
		if err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		files = append(files, layerEntry{path: obj, data: data, mode: 0o755})
		needed, err := sharedLibraries(filepath.Join(rootfs, obj))
		if err != nil {
			return nil, err
		}
		for _, lib := range needed {
			objects = append(objects, path.Join(libDir, path.Base(lib)))
		}
	}
	// The loader is asked for as /lib64/ld-linux-x86-64.so.2.
	files = append(files, layerEntry{path: "lib", link: "usr/lib"}, layerEntry{path: "lib64", link: "usr/lib64"},
		layerEntry{path: "usr/lib64/ld-linux-x86-64.so.2", link: "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"})
	return files, nil
}

// sharedLibraries are what an ELF object asks the loader for: its
// interpreter and the libraries it needs.
func sharedLibraries(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", file, err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", file, err)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			interp := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(interp, 0); err != nil {
				return nil, err
			}
			libs = append(libs, strings.TrimRight(string(interp), "\x00"))
		}
	}
	return libs, nil
}
