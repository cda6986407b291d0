// Command kubeha is kubeha's command line.
//
//	kubeha plan --stack dev      evaluate a stack offline and print what it would create
//	kubeha plan --stack dev --json  the same, as JSON: every resource with its inputs
//	kubeha rehearse --stack dev  run the stack's cluster locally and drill zone failure (root)
//	kubeha upgrade --stack dev --kubeconfig F  move the running cluster to the stack's release, after pulumi up
//	kubeha assets fetch          copy the images nodes import from their registry, for pulumi up
//	kubeha config-reference      print the config reference table the README embeds
//	kubeha docs README.md        rewrite that table inside the README
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/assetfetch"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/plan"
	"github.com/kubeha/kubeha/internal/rehearsal"
	"github.com/kubeha/kubeha/internal/upgrade"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  kubeha plan --stack NAME [--stacks DIR] [--json] [--running vX.Y.Z]
                                            evaluate stacks/Pulumi.NAME.yaml offline, with no AWS account;
                                            --json prints every resource with its type, name, parent
                                            and inputs (secrets as "[secret]"); --running plans the
                                            upgrade of a cluster that runs that release
  kubeha rehearse --stack NAME [--stacks DIR] [--report FILE] [--latency-ms N] [--drills c,e]
                                            run the stack's rendered cluster in network namespaces
                                            and drill failures (Linux, root)
  kubeha upgrade --stack NAME --kubeconfig FILE [--stacks DIR] [--server HOST:PORT] [--dry-run]
                                            after pulumi up at a new kubernetesVersion: move kubeadm-config,
                                            replace control-plane nodes zone by zone, move the version
                                            record, drain and replace workers zone by zone, move kube-proxy;
                                            run it again to resume; --dry-run only lists the steps
  kubeha assets fetch                       copy the pinned images no release archive holds (the pod
                                            sandbox image) from their registry into ~/.cache/kubeha,
                                            whence pulumi up uploads them to the asset bucket
  kubeha config-reference                   print the config reference (Markdown)
  kubeha docs FILE                          rewrite the config reference inside FILE
`

// run is the command line, returning the exit code: 0 ok, 1 failed, 2 misuse.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "plan":
		flags := flag.NewFlagSet("plan", flag.ContinueOnError)
		flags.SetOutput(stderr)
		stack := flags.String("stack", "", "stack name: reads DIR/Pulumi.NAME.yaml")
		dir := flags.String("stacks", "stacks", "folder of stack files")
		asJSON := flags.Bool("json", false, "print every resource and its inputs as JSON")
		running := flags.String("running", "", "the release the running cluster records (SSM "+bootstrap.RunningVersionParameter("<cluster>")+"): plan the upgrade from it")
		if err := flags.Parse(args[1:]); err != nil {
			return 2
		}
		if *stack == "" || flags.NArg() > 0 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		file := filepath.Join(*dir, "Pulumi."+*stack+".yaml")
		p, err := plan.Evaluate(*stack, file, *running)
		if err != nil {
			fmt.Fprintf(stderr, "kubeha plan: %v\n", err)
			var bad *components.FieldError
			if errors.As(err, &bad) {
				fmt.Fprintf(stderr, "Fix the keys above in %s; the README's config reference lists every key.\n", file)
			}
			return 1
		}
		write := p.Write
		if *asJSON {
			write = p.WriteJSON
		}
		if err := write(stdout); err != nil {
			fmt.Fprintf(stderr, "kubeha plan: %v\n", err)
			return 1
		}
		return 0
	case "rehearse":
		return rehearse(args[1:], stdout, stderr)
	case "upgrade":
		return upgradeCluster(args[1:], stdout, stderr)
	case "assets":
		if len(args) != 2 || args[1] != "fetch" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		// Each supported release's: a cluster, or a pool held behind, may
		// run either.
		for _, release := range bootstrap.KubernetesReleases {
			if err := assetfetch.FetchAll(bootstrap.PinnedAssetsOf(release), stdout); err != nil {
				fmt.Fprintf(stderr, "kubeha assets fetch: %v\n", err)
				return 1
			}
		}
		return 0
	case "config-reference":
		ref, err := config.Reference()
		if err != nil {
			fmt.Fprintf(stderr, "kubeha config-reference: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, ref)
		return 0
	case "docs":
		if len(args) != 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		if err := spliceReference(args[1]); err != nil {
			fmt.Fprintf(stderr, "kubeha docs: %v\n", err)
			return 1
		}
		return 0
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
}

func spliceReference(path string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	updated, err := config.SpliceReference(string(doc))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(updated), 0o644)
}

// drillNames splits the --drills flag's list.
func drillNames(list string) []string {
	if list == "" {
		return nil
	}
	return strings.Split(list, ",")
}

// rehearse runs the local HA rehearsal and writes its report.
func rehearse(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("rehearse", flag.ContinueOnError)
	flags.SetOutput(stderr)
	stack := flags.String("stack", "", "stack name: reads DIR/Pulumi.NAME.yaml")
	dir := flags.String("stacks", "stacks", "folder of stack files")
	reportPath := flags.String("report", "rehearsal-report.json", "where to write the JSON report")
	latency := flags.Int("latency-ms", 0, "delay added between zones with tc netem")
	only := flags.String("drills", "", "comma-separated drills to run, e.g. c,e (default: all)")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *stack == "" || flags.NArg() > 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if why := rehearsal.Available(); why != "" {
		fmt.Fprintf(stderr, "kubeha rehearse: the rehearsal %s. Run it as root on Linux: sudo make rehearse\n", why)
		return 1
	}
	// Ctrl-C or a kill stops the drills; Run then removes everything.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "kubeha-rehearsal-")
	if err != nil {
		fmt.Fprintf(stderr, "kubeha rehearse: %v\n", err)
		return 1
	}
	report, err := rehearsal.Run(ctx, rehearsal.Options{Stack: *stack, StackFile: filepath.Join(*dir, "Pulumi."+*stack+".yaml"),
		WorkDir: work, LatencyMs: *latency, Drills: drillNames(*only), Log: stderr})
	if report != nil {
		_ = report.WriteTable(stdout)
		if werr := report.WriteJSON(*reportPath); werr != nil {
			fmt.Fprintf(stderr, "kubeha rehearse: %v\n", werr)
			return 1
		}
		fmt.Fprintf(stdout, "Report written to %s.\n", *reportPath)
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "kubeha rehearse: interrupted; the namespaces, links and processes it made are removed")
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "kubeha rehearse: %v\n", err)
		return 1
	}
	return 0
}

// upgradeCluster runs `kubeha upgrade` with the default AWS credentials
// and the stack's region.
func upgradeCluster(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	flags.SetOutput(stderr)
	stack := flags.String("stack", "", "stack name: reads DIR/Pulumi.NAME.yaml")
	dir := flags.String("stacks", "stacks", "folder of stack files")
	kubeconfig := flags.String("kubeconfig", "", "cluster-admin kubeconfig: pulumi stack output kubeconfig --show-secrets")
	server := flags.String("server", "", "reach the API at HOST:PORT instead (a tunnel), its certificate checked for the kubeconfig's host")
	dryRun := flags.Bool("dry-run", false, "list the steps and change nothing")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *stack == "" || *kubeconfig == "" || flags.NArg() > 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	file := filepath.Join(*dir, "Pulumi."+*stack+".yaml")
	raw, err := config.ReadStackFile(file)
	if err == nil {
		var cfg components.ClusterArgs
		if cfg, err = config.Parse(raw); err == nil {
			err = upgradeTo(cfg, *kubeconfig, *server, *dryRun, stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "kubeha upgrade: %v\n", err)
		return 1
	}
	return 0
}

func upgradeTo(cfg components.ClusterArgs, kubeconfig, server string, dryRun bool, stdout io.Writer) error {
	data, err := os.ReadFile(kubeconfig)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	account, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.Region))
	if err != nil {
		return err
	}
	_, err = upgrade.Command(ctx, upgrade.Options{ClusterName: cfg.ClusterName, Target: cmp.Or(cfg.KubernetesVersion, components.DefaultKubernetesVersion),
		Kubeconfig: data, Server: server, AWS: account, DryRun: dryRun,
		Logf: func(format string, args ...any) { fmt.Fprintf(stdout, "kubeha upgrade: "+format+"\n", args...) }})
	return err
}
