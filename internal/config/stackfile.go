package config

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/components"
)

// ReadStackFile reads a Pulumi stack file (stacks/Pulumi.<stack>.yaml) into
// the raw form Pulumi hands a program, so Parse sees the same input offline
// as under `pulumi up`.
func ReadStackFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw, err := ParseStackYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return raw, nil
}

// ParseStackYAML converts a stack file's config: block. Strings stay bare,
// other values become JSON, as the Pulumi engine passes them.
func ParseStackYAML(data []byte) (map[string]string, error) {
	var file struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("not a Pulumi stack file: %w", err)
	}
	raw := make(map[string]string, len(file.Config))
	for k, v := range file.Config {
		if !strings.Contains(k, ":") {
			return nil, &components.FieldError{Key: k, Value: "a key with no namespace", Allowed: Namespace + ":" + k + " or another namespace:key"}
		}
		if s, ok := v.(string); ok {
			raw[k] = s
			continue
		}
		if m, ok := v.(map[string]any); ok && len(m) == 1 && m["secure"] != nil {
			return nil, &components.FieldError{Key: k, Value: "an encrypted value", Allowed: "a plain value: no kubeha key is a secret, and plan reads no secrets"}
		}
		j, err := json.Marshal(v)
		if err != nil {
			return nil, &components.FieldError{Key: k, Value: fmt.Sprintf("%v", v), Allowed: "YAML with string keys"}
		}
		raw[k] = string(j)
	}
	return raw, nil
}
