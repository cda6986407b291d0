// Package program is the kubeha stack program: typed config in, components
// out. main.go runs it under `pulumi up`; the offline plan and the stack
// tests run the same function under mocks.
package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/config"
)

// Stack returns the program for a stack whose raw configuration is raw,
// keyed "namespace:key" as Pulumi passes it. A config error is returned
// before any resource is declared.
func Stack(raw map[string]string) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		cfg, err := config.Parse(raw)
		if err != nil {
			return err
		}
		var notHA []string
		for _, f := range cfg.NotHA() {
			notHA = append(notHA, f.String())
			if err := ctx.Log.Warn("NOT HA: "+f.String(), nil); err != nil {
				return err
			}
		}

		network, err := components.NewNetwork(ctx, cfg.ClusterName+"-network", networkArgs(cfg))
		if err != nil {
			return err
		}

		ctx.Export("zones", pulumi.ToStringArray(cfg.Zones))
		ctx.Export("vpcId", network.VpcID)
		ctx.Export("privateSubnetIds", pulumi.ToStringArrayOutput(network.PrivateSubnetIDs))
		ctx.Export("publicSubnetIds", pulumi.ToStringArrayOutput(network.PublicSubnetIDs))
		ctx.Export("notHA", pulumi.ToStringArray(notHA))
		return nil
	}
}

func networkArgs(cfg config.Stack) *components.NetworkArgs {
	args := &components.NetworkArgs{
		ClusterName:      cfg.ClusterName,
		Region:           cfg.Region,
		Zones:            cfg.Zones,
		VpcCidr:          cfg.Network.VpcCidr,
		SharedNatGateway: cfg.Network.SharedNatGateway,
		Protect:          cfg.DeletionProtection,
		Tags:             map[string]string{"kubeha.io/environment": cfg.Environment},
	}
	if n := cfg.Network; n.ExistingVpcID != "" {
		args.Existing = &components.ExistingNetwork{
			VpcID:            pulumi.String(n.ExistingVpcID),
			PrivateSubnetIDs: stringInputs(n.ExistingPrivateSubnetIDs),
			PublicSubnetIDs:  stringInputs(n.ExistingPublicSubnetIDs),
		}
	}
	return args
}

func stringInputs(values []string) []pulumi.StringInput {
	var out []pulumi.StringInput
	for _, v := range values {
		out = append(out, pulumi.String(v))
	}
	return out
}
