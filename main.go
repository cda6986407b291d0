// Command kubeha is the Pulumi stack program: `pulumi up --stack dev`.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/program"
)

func main() {
	// The engine passes the whole stack configuration in PULUMI_CONFIG; reading
	// all of it, not key by key, is what lets kubeha reject unknown keys.
	raw := map[string]string{}
	if text := os.Getenv(pulumi.EnvConfig); text != "" {
		if err := json.Unmarshal([]byte(text), &raw); err != nil {
			fmt.Fprintf(os.Stderr, "kubeha: reading %s: %v\n", pulumi.EnvConfig, err)
			os.Exit(1)
		}
	}
	pulumi.Run(program.Stack(raw))
}
