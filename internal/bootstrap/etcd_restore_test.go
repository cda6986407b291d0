package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEtcdRestoreOnlyWhileHeld: `hold` keeps etcd from starting (the
// file etcd.service's condition names) and stops it; a restore runs only
// while held, since a member started with no data while the others are
// restored would re-register and remove its restored entry; `release`
// lets it start again. Held, the restore keeps the old data aside.
func TestEtcdRestoreOnlyWhileHeld(t *testing.T) {
	dir := t.TempDir()
	volume, hold, calls := filepath.Join(dir, "volume"), filepath.Join(dir, "run", "etcd.hold"), filepath.Join(dir, "calls")
	data := filepath.Join(volume, "data")
	if err := os.MkdirAll(filepath.Join(data, "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	fakes := map[string]string{
		"systemctl": "#!/bin/bash\nif [ \"$1\" = show ]; then echo inactive; else echo \"systemctl $*\" >>" + calls + "; fi\n",
		"etcdctl":   "#!/bin/bash\nexit 1\n",
		"aws":       "#!/bin/bash\n[ \"$1 $2\" = \"s3 cp\" ] && echo snapshot >\"$4\"\n",
		"etcdutl": `#!/bin/bash
if [ "$2" = restore ]; then
  while [ $# -gt 0 ]; do [ "$1" = --data-dir ] && mkdir -p "$2/member" && touch "$2/member/restored"; shift; done
fi
`,
	}
	bin := scriptDir(t, fakes, "etcd-restore.sh", "etcd-common.sh")
	run := func(args ...string) (int, string) {
		cmd := exec.Command("bash", append([]string{filepath.Join(bin, "etcd-restore.sh")}, args...)...)
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "MEMBER_NAME=etcd-a", "MEMBER_SERVICE=etcd.service", "HOLD_FILE=" + hold,
			"LOCAL_CLIENT_URL=https://127.0.0.1:2379", "VOLUME_MOUNT=" + volume, "DATA_DIR=" + data,
			"INITIAL_CLUSTER=etcd-a=https://etcd-a:2380", "MEMBER_PEER_URL=https://etcd-a:2380", "RESTORE_BUMP_REVISION=1000000000"}
		return runScript(t, cmd)
	}
	restored := func() (bool, []string) {
		_, err := os.Stat(filepath.Join(data, "member", "restored"))
		aside, _ := filepath.Glob(data + ".before-restore-*")
		return err == nil, aside
	}
	snapshot := []string{"s3://b/snapshots/s.db", "restore-1"}

	if code, out := run(snapshot...); code == 0 || !strings.Contains(out, "kubeha-etcd-restore hold") {
		t.Errorf("not held: exit %d, want a refusal naming kubeha-etcd-restore hold:\n%s", code, out)
	}
	if done, aside := restored(); done || len(aside) != 0 {
		t.Fatalf("not held: restored %v, data moved to %v; want the data untouched", done, aside)
	}
	if code, out := run("hold"); code != 0 {
		t.Fatalf("hold: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(hold); err != nil {
		t.Errorf("hold made no %s: %v", hold, err)
	}
	if code, out := run(snapshot...); code != 0 {
		t.Fatalf("held: exit %d:\n%s", code, out)
	}
	if done, aside := restored(); !done || len(aside) != 1 {
		t.Errorf("held: restored %v, old data kept at %v; want both", done, aside)
	}
	if code, out := run("release"); code != 0 {
		t.Fatalf("release: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(hold); !os.IsNotExist(err) {
		t.Errorf("release left %s: %v", hold, err)
	}
	got, _ := os.ReadFile(calls)
	if want := "systemctl stop etcd.service\nsystemctl start --no-block etcd.service\n"; string(got) != want {
		t.Errorf("systemctl calls:\n%s\nwant:\n%s", got, want)
	}
}
