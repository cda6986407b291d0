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
	"cmp"
	"fmt"
	"strings"
	"time"
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

// Every node's first boot runs as BootstrapUnit, rerun until it succeeds
// or the node is replaced (bootstrap-steps.sh).
const (
	BootstrapUnit = "kubeha-bootstrap.service"
	// BootstrapStateDir holds a file <step>.done for each step done.
	BootstrapStateDir = "/var/lib/kubeha/bootstrap"
	// BootstrapDoneFile exists once the node bootstrapped: the unit does
	// not run again, even after a reboot.
	BootstrapDoneFile = BootstrapStateDir + "/done"
	// BootstrapDeadline is how long a node may take, unless told otherwise,
	// to become healthy for its role before it gives itself up to be
	// replaced. Package installs, image imports and kubeadm take 2 to 6
	// minutes; later zones wait for the first.
	BootstrapDeadline = 20 * time.Minute
	// LaunchHook holds each new instance out of service until its first
	// boot completes it; AWS abandons it (the instance is replaced) after
	// LaunchHookTimeout, a backstop for a node that cannot even report.
	LaunchHook = "kubeha-node-healthy"
	// DrainHook holds a worker leaving its group (terminating) until a
	// control-plane node has drained it (control-plane-worker-drain.sh);
	// AWS lets it go after DrainHookTimeout whatever happened.
	DrainHook        = "kubeha-drain"
	DrainHookTimeout = 10 * time.Minute
	// PoolTag names a worker's pool on its instance and group: the drainer
	// finds the worker groups by it.
	PoolTag = "kubeha.io/pool"
	// EtcdLeaveHook holds an etcd member leaving its group until the other
	// members are healthy voters (etcd-leave.sh), so that replacing one
	// never costs the cluster its quorum; a member that no longer serves
	// goes at once. AWS lets it go after EtcdLeaveHookTimeout regardless.
	EtcdLeaveHook        = "kubeha-etcd-leave"
	EtcdLeaveHookTimeout = 30 * time.Minute
	// BootstrapFailedMetric, in EtcdSnapshotMetricNamespace with the
	// cluster's name as dimension, counts nodes that gave up.
	BootstrapFailedMetric = "NodeBootstrapFailed"
	// TokenSyncFailedMetric, in the same namespace, counts failed runs of
	// a control-plane node's join token sync.
	TokenSyncFailedMetric = "JoinTokenSyncFailed"
	// CSRApproverFailedMetric, in the same namespace, counts runs of the
	// serving certificate approver that failed or left a request unchecked.
	CSRApproverFailedMetric = "CSRApproverFailed"
	// CertDaysLeftMetric, in the same namespace, is the days left on a
	// control-plane or etcd node's shortest-lived certificate, sent on
	// every renewal or refresh check; CertRenewalFailedMetric counts
	// failed checks.
	CertDaysLeftMetric      = "CertificateDaysLeft"
	CertRenewalFailedMetric = "CertificateRenewalFailed"
	// bootstrapRetry is how soon systemd reruns a failed first boot, and
	// the longest a step waits between tries: short, as a node waiting for
	// the first zone's to create the cluster should join soon after.
	bootstrapRetry = 30 * time.Second
)

// LaunchHookTimeout is how long AWS waits for a node with that bootstrap
// deadline (zero: BootstrapDeadline) before it abandons the launch.
func LaunchHookTimeout(deadline time.Duration) time.Duration {
	return cmp.Or(deadline, BootstrapDeadline) + 10*time.Minute
}

// withEnv renders a node's env file at path, the unit that runs its
// first-boot script with it, and the command that starts the unit. The
// node gives itself up after deadline (zero: BootstrapDeadline).
func (n *Node) withEnv(path, header, cluster string, deadline time.Duration, vars []envVar, firstBoot string) error {
	vars = append(vars,
		envVar{"BOOTSTRAP_STATE_DIR", BootstrapStateDir},
		envVar{"BOOTSTRAP_DEADLINE_SECONDS", fmt.Sprint(cmp.Or(deadline, BootstrapDeadline).Seconds())},
		envVar{"BOOTSTRAP_BACKOFF_SECONDS", fmt.Sprint(bootstrapRetry.Seconds())},
		envVar{"LAUNCH_HOOK", LaunchHook},
		envVar{"BOOTSTRAP_METRIC_NAMESPACE", EtcdSnapshotMetricNamespace},
		envVar{"BOOTSTRAP_FAILED_METRIC", BootstrapFailedMetric},
		envVar{"BOOTSTRAP_METRIC_DIMENSIONS", EtcdSnapshotMetricDimension + "=" + cluster},
	)
	content, env, err := envFile(header, vars)
	if err != nil {
		return err
	}
	n.EnvFile, n.Env = path, env
	service := unit{BootstrapUnit, strings.Join([]string{
		"[Unit]",
		"Description=First boot of this node, rerun until it succeeds (kubeha)",
		"Wants=network-online.target",
		"After=network-online.target",
		"ConditionPathExists=!" + BootstrapDoneFile,
		// Rerun forever: past its deadline the script gives the node up.
		"StartLimitIntervalSec=0",
		"",
		"[Service]",
		"Type=oneshot",
		"EnvironmentFile=" + path,
		"ExecStart=" + ScriptDir + "/" + firstBoot,
		"Restart=on-failure",
		fmt.Sprintf("RestartSec=%.0f", bootstrapRetry.Seconds()),
		"TimeoutStartSec=infinity",
		"StandardOutput=journal+console",
		"",
		"[Install]",
		"WantedBy=multi-user.target",
		""}, "\n")}
	n.Files = append(n.Files, File{Path: path, Content: content, Mode: "0644"}, service.file())
	n.Commands = append(n.Commands, []string{"systemctl", "enable", "--now", "--no-block", BootstrapUnit})
	return n.addScripts("bootstrap-steps.sh")
}

// unit is a systemd unit file kubeha renders.
type unit struct{ name, content string }

func (u unit) file() File {
	return File{Path: "/etc/systemd/system/" + u.name, Content: u.content, Mode: "0644"}
}

// timedScript is a oneshot service that runs script with the settings in
// envFile once the unit after has started, and the timer that starts it:
// schedule are the timer's settings, one per line.
type timedScript struct {
	name, does, script, envFile, after string
	schedule                           []string
	// environment are more Environment= settings of the service.
	environment []string
}

// everySeconds runs script 5 s after boot, then seconds after each run
// ends, to the second: systemd would otherwise let a timer slip by up to a
// minute.
func everySeconds(serviceName, does, script, envFile, after string, seconds int) (service, timer unit) {
	return timedScript{name: strings.TrimSuffix(serviceName, ".service"), does: does, script: script, envFile: envFile, after: after,
		schedule: []string{"OnActiveSec=5", fmt.Sprintf("OnUnitInactiveSec=%ds", seconds), "AccuracySec=1s"}}.units()
}

func (t timedScript) units() (service, timer unit) {
	lines := []string{"[Unit]", "Description=" + t.does + " (kubeha)", "After=" + t.after, "",
		"[Service]", "Type=oneshot", "EnvironmentFile=" + t.envFile}
	for _, e := range t.environment {
		lines = append(lines, "Environment="+e)
	}
	lines = append(lines, "ExecStart="+ScriptDir+"/"+t.script, "")
	service = unit{t.name + ".service", strings.Join(lines, "\n")}
	timer = unit{t.name + ".timer", strings.Join(append([]string{"[Unit]", "Description=" + t.does + " (kubeha)", "", "[Timer]"},
		append(t.schedule, "", "[Install]", "WantedBy=timers.target", "")...), "\n")}
	return service, timer
}

// privateFile is the unit readable by root only.
func (u unit) privateFile() File {
	f := u.file()
	f.Mode = "0600"
	return f
}
