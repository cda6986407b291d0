package config

import (
	"encoding/json"
	"reflect"

	"github.com/kubeha/kubeha/components"
)

// Format writes args back in the raw form Parse reads: every set
// top-level key, strings bare and everything else as JSON. Parse(Format(a))
// gives a again.
func Format(args components.ClusterArgs) (map[string]string, error) {
	raw := map[string]string{}
	if args.Region != "" {
		raw[RegionKey] = args.Region
	}
	v := reflect.ValueOf(args)
	for i := 0; i < v.NumField(); i++ {
		name, value := jsonKey(v.Type().Field(i)), v.Field(i)
		if name == "" || value.IsZero() {
			continue
		}
		if value.Kind() == reflect.String {
			raw[Namespace+":"+name] = value.String()
			continue
		}
		text, err := json.Marshal(value.Interface())
		if err != nil {
			return nil, err
		}
		raw[Namespace+":"+name] = string(text)
	}
	return raw, nil
}
