// Package components holds kubeha's Pulumi ComponentResources, one file
// each, with the options each takes (the same types a stack file's keys
// decode into), their defaults and their validation. Every child is parented to its component and named with the component's
// name as prefix; a zonal child's name holds its zone as a "-<zone>" part.
package components

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/internal/bootstrap"
)

// clusterTagKey is the tag the Kubernetes AWS integrations use to find a
// cluster's resources.
func clusterTagKey(cluster string) string { return bootstrap.ClusterTagKey(cluster) }

// clusterTags are the tags of every kubeha resource: its Name, the cluster
// ownership tag, the user's extra tags, and extra key/value pairs.
func clusterTags(cluster, name string, user map[string]string, extra ...string) pulumi.StringMap {
	tags := pulumi.StringMap{}
	for k, v := range user {
		tags[k] = pulumi.String(v)
	}
	tags["Name"] = pulumi.String(name)
	tags[clusterTagKey(cluster)] = pulumi.String("owned")
	for i := 0; i+1 < len(extra); i += 2 {
		tags[extra[i]] = pulumi.String(extra[i+1])
	}
	return tags
}

// resolve renders one string from named inputs once all are known: a
// pulumi.All whose values have names instead of positions.
func resolve(inputs pulumi.StringMap, render func(map[string]string) (string, error)) pulumi.StringOutput {
	return inputs.ToStringMapOutput().ApplyT(render).(pulumi.StringOutput)
}

// toOutputs widens a slice of inputs for pulumi.ToStringArrayOutput.
func toOutputs(in []pulumi.StringInput) []pulumi.StringOutput {
	out := make([]pulumi.StringOutput, len(in))
	for i, v := range in {
		out[i] = v.ToStringOutput()
	}
	return out
}
