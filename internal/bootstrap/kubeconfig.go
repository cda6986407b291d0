package bootstrap

import "encoding/base64"

// AdminKubeconfig is a kubeconfig for server (https://host:port) that
// authenticates with a client certificate: the ControlPlane component's
// kubeconfig output, for the people who run the cluster.
func AdminKubeconfig(cluster, server, caPEM, certPEM, keyPEM string) (string, error) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	user := cluster + "-admin"
	return yamlDocs(map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []any{map[string]any{"name": cluster, "cluster": map[string]string{"server": server, "certificate-authority-data": b64(caPEM)}}},
		"users":           []any{map[string]any{"name": user, "user": map[string]string{"client-certificate-data": b64(certPEM), "client-key-data": b64(keyPEM)}}},
		"contexts":        []any{map[string]any{"name": user + "@" + cluster, "context": map[string]string{"cluster": cluster, "user": user}}},
		"current-context": user + "@" + cluster,
	})
}
