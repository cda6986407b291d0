// Package components holds kubeha's Pulumi ComponentResources, one file each.
// Every child is parented to its component and named with the component's
// name as prefix; a zonal child's name holds its zone as a "-<zone>" part.
package components

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

// clusterTagKey is the tag the Kubernetes AWS integrations use to find a
// cluster's resources.
func clusterTagKey(cluster string) string { return "kubernetes.io/cluster/" + cluster }

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
