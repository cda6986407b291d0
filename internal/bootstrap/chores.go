package bootstrap

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// ScriptArchive is a tar.gz of kubeha scripts that a node fetches from its
// asset bucket, checked by its digest, instead of carrying them in its
// user-data, which EC2 caps at UserDataLimit.
type ScriptArchive struct {
	// Key is its key in the asset bucket, named by its digest, so a node
	// always finds the scripts its launch template names.
	Key    string
	SHA256 string
	Data   []byte
}

// controlPlaneChores are the scripts a control-plane node's timers run,
// and due.sh and lease.sh, which only they source: none runs before its
// first boot starts the timers, which fetches them.
var controlPlaneChores = []string{"control-plane-token-sync.sh", "control-plane-csr-approver.sh", "control-plane-cert-renewal.sh",
	"control-plane-worker-drain.sh", "addons-apply.sh", "kubelet-follow.sh", "due.sh", "lease.sh"}

// ControlPlaneChores is the archive of a control-plane node's timer
// scripts, as user-data would carry them (without comment lines).
func ControlPlaneChores() (ScriptArchive, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, name := range controlPlaneChores {
		script, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			return ScriptArchive{}, err
		}
		content := withoutCommentLines(string(script))
		// Fixed times and owner: the same scripts give the same digest.
		header := &tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(header); err != nil {
			return ScriptArchive{}, err
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			return ScriptArchive{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return ScriptArchive{}, err
	}
	if err := zw.Close(); err != nil {
		return ScriptArchive{}, err
	}
	sum := sha256.Sum256(buf.Bytes())
	digest := hex.EncodeToString(sum[:])
	return ScriptArchive{Key: "kubeha-scripts/" + digest + "/control-plane-chores.tar.gz", SHA256: digest, Data: buf.Bytes()}, nil
}
