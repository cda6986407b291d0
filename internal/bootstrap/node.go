// Package bootstrap renders what runs on a node: files, systemd units,
// scripts and the commands that start them. It is plain Go with no Pulumi
// types, so the same Node becomes cloud-init user-data on AWS and real
// processes in the local tests and rehearsal.
package bootstrap

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// UserDataLimit is the largest user-data EC2 accepts, in bytes.
const UserDataLimit = 16384

// ScriptDir is where a node's scripts are written. The scripts themselves
// never name it: they find their siblings next to themselves.
const ScriptDir = "/usr/local/lib/kubeha"

// BinDir is where nodes install the binaries they fetch (etcd, etcdctl,
// etcdutl); nodePath, the PATH node scripts run with, puts it first.
const (
	BinDir   = "/usr/local/bin"
	nodePath = BinDir + ":/usr/bin:/bin:/usr/sbin:/sbin"
)

//go:embed scripts/*.sh
var scripts embed.FS

// addScripts adds kubeha's scripts, by file name, to ScriptDir: executable
// when they start with #!, readable only when other scripts source them.
func (n *Node) addScripts(names ...string) error {
	for _, name := range names {
		script, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			return err
		}
		mode := "0644"
		if strings.HasPrefix(string(script), "#!") {
			mode = "0755"
		}
		n.Files = append(n.Files, File{Path: ScriptDir + "/" + name, Content: withoutCommentLines(string(script)), Mode: mode})
	}
	return nil
}

// heredocStart finds a here-document's delimiter (<<EOF, <<-'EOF'), not a
// here-string (<<<).
var heredocStart = regexp.MustCompile(`<<-?['"]?([A-Za-z_]+)['"]?`)

// withoutCommentLines is a script as user-data carries it: without its
// comment lines, which are a third of its size (EC2 takes 16 KB of
// user-data), but with its shebang, its shellcheck directives, and every
// line of a here-document as it is. The repository keeps the comments.
func withoutCommentLines(script string) string {
	var kept []string
	delimiter := ""
	for i, line := range strings.Split(script, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case delimiter != "":
			if trimmed == delimiter {
				delimiter = ""
			}
		case i > 0 && strings.HasPrefix(trimmed, "#") && !strings.HasPrefix(trimmed, "# shellcheck "):
			continue
		case !strings.Contains(line, "<<<"):
			if m := heredocStart.FindStringSubmatch(line); m != nil {
				delimiter = m[1]
			}
		}
		kept = append(kept, line)
	}
	return strings.Join(kept, "\n")
}

// File is one file written on the node.
type File struct {
	Path    string
	Content string
	Mode    string // octal, e.g. "0644"
}

// Node is everything one node needs at first boot.
type Node struct {
	Packages []string
	Files    []File
	// Commands run once, in order, after the files are written.
	Commands [][]string
	// EnvFile is the node's env file, among Files; Env holds its variables
	// as KEY=value, for whoever starts a script outside systemd and
	// cloud-init (the local lab and rehearsal).
	EnvFile string
	Env     []string
}

// File returns the file at path, or nil.
func (n Node) File(path string) *File {
	for i := range n.Files {
		if n.Files[i].Path == path {
			return &n.Files[i]
		}
	}
	return nil
}

// CloudConfig renders the node as a #cloud-config document.
func (n Node) CloudConfig() ([]byte, error) {
	type writeFile struct {
		Path        string `yaml:"path"`
		Content     string `yaml:"content"`
		Permissions string `yaml:"permissions"`
		Owner       string `yaml:"owner"`
	}
	doc := struct {
		PackageUpdate bool        `yaml:"package_update"`
		Packages      []string    `yaml:"packages,omitempty"`
		WriteFiles    []writeFile `yaml:"write_files"`
		RunCmd        [][]string  `yaml:"runcmd,omitempty"`
	}{PackageUpdate: len(n.Packages) > 0, Packages: n.Packages, RunCmd: n.Commands}
	for _, f := range n.Files {
		doc.WriteFiles = append(doc.WriteFiles, writeFile{Path: f.Path, Content: f.Content, Permissions: f.Mode, Owner: "root:root"})
	}
	var buf bytes.Buffer
	buf.WriteString("#cloud-config\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// UserData is the cloud-config as EC2 takes it: plain when it fits in
// UserDataLimit, gzip-compressed (which cloud-init detects) when not.
func (n Node) UserData() ([]byte, error) {
	doc, err := n.CloudConfig()
	if err != nil || len(doc) <= UserDataLimit {
		return doc, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(doc); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() > UserDataLimit {
		return nil, fmt.Errorf("bootstrap: user-data is %d bytes gzipped, over the %d-byte EC2 limit", buf.Len(), UserDataLimit)
	}
	return buf.Bytes(), nil
}

// WriteTo writes the node's files under root, as they would be on the node;
// the local tests and rehearsal use it instead of cloud-init.
func (n Node) WriteTo(root string) error {
	for _, f := range n.Files {
		mode, err := strconv.ParseUint(f.Mode, 8, 32)
		if err != nil {
			return fmt.Errorf("bootstrap: %s: mode %q: %w", f.Path, f.Mode, err)
		}
		path := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(f.Content), os.FileMode(mode)); err != nil {
			return err
		}
	}
	return nil
}

// ReadUserData undoes UserData: the cloud-config, gunzipped if needed.
func ReadUserData(data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return io.ReadAll(zr)
}

// yamlDocs renders documents as one multi-document YAML stream.
func yamlDocs(docs ...any) (string, error) {
	var parts []string
	for _, d := range docs {
		var buf strings.Builder
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(d); err != nil {
			return "", err
		}
		if err := enc.Close(); err != nil {
			return "", err
		}
		parts = append(parts, buf.String())
	}
	return strings.Join(parts, "---\n"), nil
}
