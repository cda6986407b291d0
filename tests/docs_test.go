package tests

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kubeha/kubeha/components"
	"github.com/kubeha/kubeha/internal/addons"
	"github.com/kubeha/kubeha/internal/config"
)

// The README's config reference is generated from the struct; this fails
// when they drift. `make docs` rewrites it.
func TestReadmeConfigReferenceIsCurrent(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	current, err := config.SpliceReference(string(readme))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	if current != string(readme) {
		ref, _ := config.Reference()
		t.Errorf("README.md's config reference is stale: run `make docs`. It should read:\n%s", ref)
	}
}

// Pulumi.yaml's typed schema must agree with ClusterArgs: same keys, types,
// descriptions (the fields' doc comments) and defaults, and every stack file sets the keys without one.
func TestPulumiYamlSchemaMatchesConfig(t *testing.T) {
	data, err := os.ReadFile("../Pulumi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var project struct {
		Name           string `yaml:"name"`
		Runtime        string `yaml:"runtime"`
		StackConfigDir string `yaml:"stackConfigDir"`
		Config         map[string]struct {
			Type        string `yaml:"type"`
			Description string `yaml:"description"`
			Default     any    `yaml:"default"`
			Items       *struct {
				Type string `yaml:"type"`
			} `yaml:"items"`
		} `yaml:"config"`
	}
	if err := yaml.Unmarshal(data, &project); err != nil {
		t.Fatal(err)
	}
	if project.Name != config.Namespace || project.Runtime != "go" || project.StackConfigDir != "stacks" {
		t.Errorf("Pulumi.yaml name/runtime/stackConfigDir = %s/%s/%s", project.Name, project.Runtime, project.StackConfigDir)
	}
	if len(project.Config) == 0 {
		t.Fatal("Pulumi.yaml declares no typed config")
	}
	defaults := reflect.ValueOf(components.ClusterArgs{}.WithDefaults())
	st := defaults.Type()
	docs, err := config.FieldDocs()
	if err != nil {
		t.Fatal(err)
	}
	for key, decl := range project.Config {
		field, ok := fieldWithKey(st, key)
		if !ok {
			t.Errorf("Pulumi.yaml declares %s, which internal/config does not know", key)
			continue
		}
		ft := field.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		wantType := map[reflect.Kind]string{reflect.String: "string", reflect.Bool: "boolean", reflect.Int: "integer", reflect.Slice: "array"}[ft.Kind()]
		if decl.Type != wantType {
			t.Errorf("Pulumi.yaml %s: type %s, want %s", key, decl.Type, wantType)
		}
		if wantType == "array" && (decl.Items == nil || decl.Items.Type != "string" || ft.Elem().Kind() != reflect.String) {
			t.Errorf("Pulumi.yaml %s: only lists of strings are simple keys", key)
		}
		if decl.Description != docs["ClusterArgs."+field.Name] {
			t.Errorf("Pulumi.yaml %s: description differs from ClusterArgs.%s's doc comment:\n%s", key, field.Name, docs["ClusterArgs."+field.Name])
		}
		def := reflect.Indirect(defaults.FieldByIndex(field.Index)).Interface()
		if decl.Default == nil {
			if field.Tag.Get("required") != "true" {
				t.Errorf("Pulumi.yaml %s has no default, so Pulumi would require it; the struct defaults it to %v", key, def)
			}
		} else if !reflect.DeepEqual(decl.Default, def) {
			t.Errorf("Pulumi.yaml %s default %v, struct default %v", key, decl.Default, def)
		}
	}
	for name, file := range stackFiles(t) {
		raw, err := config.ReadStackFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for key, decl := range project.Config {
			if _, set := raw[config.Namespace+":"+key]; !set && decl.Default == nil {
				t.Errorf("stack %s does not set %s, which Pulumi.yaml requires", name, key)
			}
		}
	}
}

func fieldWithKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// The README's add-on table shows every chart at its pinned version.
func TestReadmeListsChartPins(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, chart := range addons.Charts {
		if row := "| " + chart.Name + " | " + chart.Version + " |"; !strings.Contains(string(readme), row) {
			t.Errorf("README.md's add-on table lacks %q", row)
		}
	}
}
