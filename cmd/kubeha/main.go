// Command kubeha is kubeha's command line.
//
//	kubeha plan --stack dev      evaluate a stack offline and print what it would create
//	kubeha config-reference      print the config reference table the README embeds
//	kubeha docs README.md        rewrite that table inside the README
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kubeha/kubeha/internal/config"
	"github.com/kubeha/kubeha/internal/plan"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  kubeha plan --stack NAME [--stacks DIR]   evaluate stacks/Pulumi.NAME.yaml offline, with no AWS account
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
		if err := flags.Parse(args[1:]); err != nil {
			return 2
		}
		if *stack == "" || flags.NArg() > 0 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		file := filepath.Join(*dir, "Pulumi."+*stack+".yaml")
		p, err := plan.Evaluate(*stack, file)
		if err != nil {
			fmt.Fprintf(stderr, "kubeha plan: %v\n", err)
			var errs config.Errors
			if errors.As(err, &errs) {
				fmt.Fprintf(stderr, "Fix the keys above in %s; the README's config reference lists every key.\n", file)
			}
			return 1
		}
		if err := p.Write(stdout); err != nil {
			fmt.Fprintf(stderr, "kubeha plan: %v\n", err)
			return 1
		}
		return 0
	case "config-reference":
		fmt.Fprint(stdout, config.Reference())
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
