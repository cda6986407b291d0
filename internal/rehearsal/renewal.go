package rehearsal

// Drill j: certificates that last minutes, renewed under traffic.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/lab"
	"github.com/kubeha/kubeha/internal/pki"
)

// What drill j compresses a year into. kubeadm's certificates on each
// control-plane node, and etcd's on every node, last shortLifetime; nodes
// check every checkEvery. A control-plane node renews with renewBefore
// plus its share of renewSpread left (the stack renders a third and a
// sixth of the validity): most of a short lifetime, since one check takes
// a minute or more on this busy machine and must begin renewing before
// the certificates expire. Its short certificates start
// shortStagger after the previous node's. The drill plays `pulumi up`
// re-issuing etcd's certificates reissueBefore their expiry, about when
// the first control-plane node renews. The nodes' runs overlap, as on one
// day of a year, so their API servers restart one at a time under the
// renewal's Lease; on this machine each has restarted its API server
// within runsEnd of the drill's checks ending.
const (
	shortLifetime = 3 * time.Minute
	checkEvery    = 30 * time.Second
	renewBefore   = 150 * time.Second
	renewSpread   = 20 * time.Second
	shortStagger  = 40 * time.Second
	reissueBefore = 100 * time.Second
	runsEnd       = 15 * time.Minute
)

// The drill's settings on a node: an environment file read after the
// node's own, and timers that check every checkEvery.
const (
	drillEnv       = "/etc/kubeha/drill-renewal.env"
	renewalService = bootstrap.CertRenewalUnit
	refreshService = bootstrap.EtcdCertRefreshUnit
	apiServerCert  = bootstrap.KubernetesPKIDir + "/apiserver.crt"
	etcdClientCert = bootstrap.KubernetesPKIDir + "/apiserver-etcd-client.crt"
	etcdServerCert = bootstrap.EtcdPKIDir + "/server.crt"
	etcdPeerCert   = bootstrap.EtcdPKIDir + "/peer.crt"
	renewalLogLine = ": renewing"
	renewedLogLine = ": renewed: "
	backLogLine    = ": kube-apiserver back"
	refreshLogLine = "wrote " + etcdServerCert
)

// renewShortCertificates gives every certificate a node serves or
// presents a lifetime of minutes, then holds the cluster through the load
// balancer past the moment the last of them expires:
//   - etcd's server, peer and client certificates are re-signed for
//     shortLifetime into the nodes' secrets (what `pulumi up` does, at any
//     lifetime), each etcd node refreshing them at once; reissueBefore
//     their expiry, long ones replace them in the secrets, and the nodes'
//     timers must pick them up;
//   - kubeadm's certificates on each control-plane node are renewed by
//     kubeadm with a validity of shortLifetime (the API server serves its
//     new certificate at once), as if a year had passed; only the node's
//     renewal timer renews them again, for the stack's validity.
//
// Past every expiry, each etcd member restarts in turn, so that every
// member and API server opens new connections with the files it now holds.
func renewShortCertificates(ctx context.Context, c *cluster, p *probe) (Drill, error) {
	if _, err := c.settle(); err != nil {
		return Drill{}, err
	}
	d := Drill{Renewals: map[string]int{}}
	start := time.Now()
	defer c.checkAsRendered()
	expiry := map[string]time.Time{}
	if err := c.reissueEtcdCertificates(shortLifetime); err != nil {
		return d, err
	}
	// The etcd nodes refresh at once: each run calls AWS, and takes tens
	// of seconds on a busy machine.
	expiries := make([]time.Time, len(c.members))
	errs := make([]error, len(c.members))
	var refreshed sync.WaitGroup
	for i, m := range c.members {
		refreshed.Go(func() {
			if errs[i] = checkOften(m, refreshService, ""); errs[i] != nil {
				return
			}
			if out, err := m.Instance.Exec("systemctl", "start", refreshService); err != nil {
				errs[i] = fmt.Errorf("%s: %w: %s\n%s", m.Name, err, out, m.UnitLog(refreshService))
				return
			}
			expiries[i], errs[i] = notAfter(m, etcdServerCert)
		})
	}
	refreshed.Wait()
	if err := errors.Join(errs...); err != nil {
		return d, err
	}
	for i, m := range c.members {
		expiry[m.Name] = expiries[i]
	}
	etcdExpiry := expiry[c.members[0].Name]
	// `pulumi up` re-issues them on its own clock, not after the loop
	// below, which takes minutes on a busy machine.
	type reissue struct {
		at  time.Time
		err error
	}
	reissued := make(chan reissue, 1)
	timer := time.AfterFunc(time.Until(etcdExpiry.Add(-reissueBefore)), func() {
		err := c.reissueEtcdCertificates(time.Duration(pki.LeafValidityHours) * time.Hour)
		reissued <- reissue{time.Now(), err}
	})
	defer timer.Stop()
	for i, n := range c.nodes {
		if i > 0 {
			if err := sleepCtx(ctx, shortStagger); err != nil {
				return d, err
			}
		}
		if err := shortenKubeadmCertificates(n); err != nil {
			return d, err
		}
		e, err := notAfter(n, apiServerCert)
		if err != nil {
			return d, err
		}
		expiry[n.Name] = e
		env := fmt.Sprintf("RENEW_BEFORE_SECONDS=%d\nRENEW_SPREAD_SECONDS=%d\n", int(renewBefore.Seconds()), int(renewSpread.Seconds()))
		if err := checkOften(n, renewalService, env); err != nil {
			return d, err
		}
	}
	for name, e := range expiry {
		if left := time.Until(e); left > shortLifetime {
			return d, fmt.Errorf("%s's certificate expires in %s, after its short lifetime %s", name, left.Round(time.Second), shortLifetime)
		}
	}
	var r reissue
	select {
	case r = <-reissued:
	case <-ctx.Done():
		return d, ctx.Err()
	}
	if r.err != nil {
		return d, r.err
	}
	d.note(fmt.Sprintf("etcd's certificates re-issued %.0fs before their short ones expired", etcdExpiry.Sub(r.at).Seconds()))
	last := start
	for _, e := range expiry {
		if e.After(last) {
			last = e
		}
	}
	// Past the last short certificate's expiry, with room for two checks.
	if err := sleepCtx(ctx, time.Until(last)+2*checkEvery); err != nil {
		return d, err
	}
	// Each node's certificate: the short one by the drill, then a long one
	// by the node's timer. Each etcd node's timer writes the long one after
	// the drill's refresh wrote the short one. A timer run may still be
	// under way on the busy machine: checked until checkEvery's fourth turn.
	type renewed struct {
		g                *lab.NodeGroup
		cert, unit, line string
		want             int
	}
	var all []renewed
	for _, m := range c.members {
		all = append(all, renewed{m, etcdServerCert, refreshService, refreshLogLine, 2})
	}
	for _, n := range c.nodes {
		all = append(all, renewed{n, apiServerCert, renewalService, renewalLogLine, 1})
	}
	renewedAll := func() error {
		for _, r := range all {
			now, err := notAfter(r.g, r.cert)
			if err != nil {
				return err
			}
			log := r.g.UnitLog(r.unit)
			d.Renewals[r.g.Name] = strings.Count(log, r.line)
			if !now.After(expiry[r.g.Name]) || d.Renewals[r.g.Name] < r.want {
				return fmt.Errorf("%s: %s expires %s, its short one expired %s; %d renewals by %s:\n%s",
					r.g.Name, r.cert, now.Format(time.TimeOnly), expiry[r.g.Name].Format(time.TimeOnly), d.Renewals[r.g.Name], r.unit, log)
			}
		}
		for _, n := range c.nodes {
			now, err := notAfter(n, etcdClientCert)
			if err != nil {
				return err
			}
			if !now.After(last) {
				return fmt.Errorf("%s's etcd client certificate expires %s, before the drill's end; its renewal timer's last runs:\n%s",
					n.Name, now.Format(time.TimeOnly), n.RecentLog(renewalService, 30))
			}
		}
		return nil
	}
	if _, err := c.waitFor("every node's long certificates", 4*checkEvery, renewedAll); err != nil {
		return d, err
	}
	// The drill's frequent checks end here, so that the restarts below
	// meet a normal cluster's load, not six nodes' AWS calls every 15 s.
	c.checkAsRendered()
	if err := apiServersRestartedInTurn(c); err != nil {
		return d, err
	}
	// Every member restarts in turn: each makes new peer connections, and
	// every API server new client connections to it, with the files they
	// now hold.
	for _, m := range c.members {
		if out, err := m.Instance.Exec("systemctl", "restart", "etcd"); err != nil {
			return d, fmt.Errorf("restarting etcd on %s: %w: %s", m.Name, err, out)
		}
		if _, err := c.waitFor("the cluster whole after "+m.Name+"'s etcd restarted", recoveryLimit, c.fullyHealthy); err != nil {
			return d, fmt.Errorf("%w\n%s", err, c.apiServerLogs())
		}
	}
	p.record(&d, start, time.Now())
	// Requests fail while a node restarts its components or an etcd member
	// restarts, before the load balancer or etcd's clients move off it; the
	// test bounds the longest time without a success.
	after := p.window(last, time.Now())
	ahead := 0
	for _, n := range c.nodes {
		log := n.RecentLog(renewalService, 200)
		began, lead := renewalLead(parseRenewalSteps(log), expiry[n.Name])
		if began && lead > 0 {
			ahead++
		}
		d.note(fmt.Sprintf("%s: its short certificates expired %s, its renewal began %.0fs before (after, if negative); its renewal: %s",
			n.Name, expiry[n.Name].UTC().Format(time.TimeOnly), lead.Seconds(), renewalSteps(log)))
	}
	d.note(fmt.Sprintf("certificates of %s renewed on all %d nodes, kubeadm's beginning before their expiry on %d of %d control-plane nodes; the last short one expired %.0fs into the drill, then each etcd member restarted in turn; after that expiry %d of %d requests failed, the longest time without a success %.1fs",
		shortLifetime, len(d.Renewals), ahead, len(c.nodes), last.Sub(start).Seconds(), after.failures, after.requests, after.longestGap.Seconds()))
	return d, heal(c, p, &d)
}

// apiServersRestartedInTurn waits until each control-plane node's
// renewal run has restarted its API server, and fails if two did at
// once: the Lease lets one at a time.
func apiServersRestartedInTurn(c *cluster) error {
	type restart struct {
		node     string
		from, to time.Time
	}
	var restarts []restart
	_, err := c.waitFor("every control-plane node's API server restarted by its renewal", runsEnd, func() error {
		restarts = nil
		for _, n := range c.nodes {
			from, to, ok := apiServerRestart(parseRenewalSteps(n.RecentLog(renewalService, 200)))
			if !ok {
				return fmt.Errorf("%s's run has not restarted its API server yet:\n%s", n.Name, n.RecentLog(renewalService, 30))
			}
			restarts = append(restarts, restart{n.Name, from, to})
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(restarts, func(a, b restart) int { return a.from.Compare(b.from) })
	for i := 1; i < len(restarts); i++ {
		if a, b := restarts[i-1], restarts[i]; b.from.Before(a.to) {
			return fmt.Errorf("%s restarted its API server at %s, before %s's restart ended at %s",
				b.node, b.from.UTC().Format(time.TimeOnly), a.node, a.to.UTC().Format(time.TimeOnly))
		}
	}
	return nil
}

// renewalStep is one step of a node's renewal run, from its timer's log.
type renewalStep struct {
	at   time.Time
	step string
}

// parseRenewalSteps is when a node's renewal timer began renewing,
// restarted each component and was done, from the timer's log.
func parseRenewalSteps(log string) []renewalStep {
	var steps []renewalStep
	for _, line := range strings.Split(log, "\n") {
		at, _, _ := strings.Cut(line, " ")
		when, err := time.Parse("2006-01-02T15:04:05-0700", at) // journalctl's short-iso
		var step string
		switch {
		case err != nil:
			continue
		case strings.HasSuffix(line, renewalLogLine):
			step = "renewing"
		case strings.Contains(line, ": restarting "):
			step = "restarting " + line[strings.LastIndex(line, " ")+1:]
		case strings.HasSuffix(line, backLogLine):
			step = "kube-apiserver back"
		case strings.Contains(line, renewedLogLine):
			step = "renewed"
		default:
			continue
		}
		steps = append(steps, renewalStep{when, step})
	}
	return steps
}

// apiServerRestart is when the last run's API server restart began and
// when the API server was back, logged before the run let go of the
// Lease, so no other node's restart can begin before it.
func apiServerRestart(steps []renewalStep) (from, to time.Time, ok bool) {
	for _, s := range steps {
		switch s.step {
		case "restarting kube-apiserver":
			from, to = s.at, time.Time{}
		case "kube-apiserver back":
			to = s.at
		}
	}
	return from, to, !from.IsZero() && !to.IsZero()
}

// renewalLead is how long before expiry the first renewal in steps began
// (negative after it), if one did.
func renewalLead(steps []renewalStep, expiry time.Time) (began bool, lead time.Duration) {
	i := slices.IndexFunc(steps, func(s renewalStep) bool { return s.step == "renewing" })
	if i < 0 {
		return false, 0
	}
	return true, expiry.Sub(steps[i].at)
}

// renewalSteps are a node's renewal steps with their times: next to the
// probe's failures they say whether a certificate served past its expiry
// was renewed late or reloaded late.
func renewalSteps(log string) string {
	var steps []string
	for _, s := range parseRenewalSteps(log) {
		steps = append(steps, s.at.UTC().Format(time.TimeOnly)+" "+s.step)
	}
	if len(steps) == 0 {
		return "none in its log"
	}
	return strings.Join(steps, ", ")
}

// reissueEtcdCertificates re-signs, for lifetime, every etcd certificate
// a node reads from its secret, and stores each where `pulumi up` would.
func (c *cluster) reissueEtcdCertificates(lifetime time.Duration) error {
	resign := func(suffix, entry string) error {
		files, err := lab.DeclaredSecret(c.stack.declared, suffix)
		if err != nil {
			return err
		}
		cert, err := c.etcdCA.Resign(files[entry], lifetime)
		if err != nil {
			return fmt.Errorf("%s %s: %w", suffix, entry, err)
		}
		return c.cloud.SetSecretEntry(c.stack.declared, suffix, entry, cert)
	}
	for _, m := range c.stack.etcd.Members {
		for _, entry := range []string{"server.crt", "peer.crt"} {
			if err := resign("-"+m.Name+"-"+m.Zone, entry); err != nil {
				return err
			}
		}
	}
	return resign(controlPlaneKey, bootstrap.PKISecretPrefix+"apiserver-etcd-client.crt")
}

// checkOften makes node g's timer for service check every checkEvery, to
// the second (systemd lets a timer slip by up to a minute), with env (if
// any) added to the service's environment.
func checkOften(g *lab.NodeGroup, service, env string) error {
	timer := strings.TrimSuffix(service, ".service") + ".timer"
	script := fmt.Sprintf(`set -e
mkdir -p /etc/systemd/system/%[2]s.d
printf '[Timer]\nOnUnitInactiveSec=%[3]ds\nAccuracySec=1s\n' >/etc/systemd/system/%[2]s.d/drill.conf
if [ -n %[4]q ]; then
  printf %[4]q >%[5]s
  mkdir -p /etc/systemd/system/%[1]s.d
  printf '[Service]\nEnvironmentFile=%[5]s\n' >/etc/systemd/system/%[1]s.d/drill.conf
fi
systemctl daemon-reload
systemctl restart %[2]s
`, service, timer, int(checkEvery.Seconds()), env, drillEnv)
	if out, err := g.Instance.Exec("bash", "-c", script); err != nil {
		return fmt.Errorf("%s: %w: %s", g.Name, err, out)
	}
	return nil
}

// shortenKubeadmCertificates renews node n's kubeadm certificates with a
// validity of shortLifetime, by kubeadm and a copy of the node's own
// configuration, which stays as rendered.
func shortenKubeadmCertificates(n *lab.NodeGroup) error {
	script := fmt.Sprintf(`set -e
sed 's/^certificateValidityPeriod: .*/certificateValidityPeriod: %s/' %s >/tmp/drill-kubeadm.yaml
kubeadm certs renew all --config /tmp/drill-kubeadm.yaml >/dev/null
`, shortLifetime, bootstrap.KubeadmInitConfigPath)
	if out, err := n.Instance.Exec("bash", "-c", script); err != nil {
		return fmt.Errorf("%s: %w: %s", n.Name, err, out)
	}
	return nil
}

// checkAsRendered takes the drill's timer and environment settings off
// every node: checks every checkEvery on six nodes load the machine.
func (c *cluster) checkAsRendered() {
	for _, g := range append(append([]*lab.NodeGroup{}, c.members...), c.nodes...) {
		if g.Instance == nil {
			continue
		}
		out, err := g.Instance.Exec("bash", "-c", "rm -rf /etc/systemd/system/kubeha-*.d "+drillEnv+" && systemctl daemon-reload")
		if err != nil {
			c.logf("%s: removing the drill's timer settings: %v: %s", g.Name, err, out)
		}
	}
}

// notAfter is when the certificate at path on node g expires.
func notAfter(g *lab.NodeGroup, path string) (time.Time, error) {
	out, err := g.Instance.Exec("openssl", "x509", "-noout", "-enddate", "-in", path)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %s: %w: %s", g.Name, path, err, out)
	}
	return time.Parse("Jan _2 15:04:05 2006 MST", strings.TrimSpace(strings.TrimPrefix(out, "notAfter=")))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
