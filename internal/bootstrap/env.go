package bootstrap

// How the node scripts get their settings.
//
// Every path, port, URL and name a script needs is rendered here, from the
// constants the Go side uses, into the node's one env file (EtcdEnvPath or
// NodeEnvPath); the scripts use only the variables, so no value is written
// both in Go and in shell (TestScriptsHoldNoRenderedValue checks it).
// Scripts do not load the env file themselves: whoever starts one provides
// the environment, and each of those starters is rendered here too:
// cloud-init's runcmd and the restore command (envExec), the systemd units
// (EnvironmentFile=), and the local lab and rehearsal (Node.Env). Scripts
// source and run their siblings from their own folder, so ScriptDir is
// not written in shell either.

import (
	"fmt"
	"strings"
)

// envVar is one line of an env file.
type envVar struct{ name, value string }

// envSafe are the characters a value may hold unquoted.
const envSafe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:,=@+%-"

// envFile renders vars in the syntax that both systemd's EnvironmentFile=
// and a POSIX shell's `.` read the same way: KEY=value, single-quoted when
// the value holds other characters than envSafe. Values that the two would
// read differently (quotes, backslashes, $, backquotes, newlines) are
// refused rather than escaped.
func envFile(header string, vars []envVar) (content string, env []string, err error) {
	lines := []string{"# " + header + ", rendered by kubeha."}
	for _, v := range vars {
		if strings.ContainsAny(v.value, "'\"\\$`\n") {
			return "", nil, fmt.Errorf("bootstrap: %s=%q: quotes, backslashes, $, backquotes and newlines are not allowed in an env file", v.name, v.value)
		}
		value := v.value
		if strings.Trim(value, envSafe) != "" {
			value = "'" + value + "'"
		}
		lines = append(lines, v.name+"="+value)
		env = append(env, v.name+"="+v.value)
	}
	return strings.Join(lines, "\n") + "\n", env, nil
}

// envExec is a shell command line that runs script with the variables of
// envPath exported, as a systemd unit with EnvironmentFile= would.
func envExec(envPath, script string) string {
	return "set -a && . " + envPath + " && set +a && exec " + script
}

// withEnv renders a node's env file at path and the commands that start
// its first-boot script with it.
func (n *Node) withEnv(path, header string, vars []envVar, firstBoot string) error {
	content, env, err := envFile(header, vars)
	if err != nil {
		return err
	}
	n.EnvFile, n.Env = path, env
	n.Files = append(n.Files, File{Path: path, Content: content, Mode: "0644"})
	n.Commands = append(n.Commands, []string{"/bin/sh", "-c", envExec(path, ScriptDir+"/"+firstBoot)})
	return nil
}

// unit is a systemd unit file kubeha renders.
type unit struct{ name, content string }

func (u unit) file() File {
	return File{Path: "/etc/systemd/system/" + u.name, Content: u.content, Mode: "0644"}
}
