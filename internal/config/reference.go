package config

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"

	"github.com/kubeha/kubeha/components"
)

// Reference renders the config reference as a Markdown table from
// components.ClusterArgs: each key's type from the Go type, its default
// from WithDefaults and its description from the field's doc comment, so
// the README cannot drift from the code.
func Reference() (string, error) {
	docs, err := FieldDocs()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| key | type | default | description |\n|---|---|---|---|\n")
	defaults := components.ClusterArgs{}.WithDefaults()
	fmt.Fprintf(&b, "| `%s` | string | required | %s |\n", RegionKey, docs["ClusterArgs.Region"])
	writeRows(&b, docs, "", reflect.ValueOf(defaults))
	return b.String(), nil
}

func writeRows(b *strings.Builder, docs map[string]string, prefix string, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f, value := t.Field(i), v.Field(i)
		name := jsonKey(f)
		if name == "" {
			continue
		}
		key := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
			// An optional block, such as network.existing: its keys, unset.
			writeRows(b, docs, key+".", reflect.Zero(ft.Elem()))
			continue
		}
		if ft.Kind() == reflect.Struct && ft != addonType {
			writeRows(b, docs, key+".", value)
			continue
		}
		doc := docs[t.Name()+"."+f.Name]
		fmt.Fprintf(b, "| `%s:%s` | %s | %s | %s |\n", Namespace, key, typeWord(ft), defaultText(f, value), doc)
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			writeRows(b, docs, key+"[].", value.Index(0))
		}
	}
}

// defaultText shows a field's default, or "required" for keys a stack must set.
func defaultText(f reflect.StructField, v reflect.Value) string {
	if f.Tag.Get("required") == "true" {
		return "required"
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct {
		return "one pool of the defaults below"
	}
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Type() == addonType {
		return fmt.Sprintf("`%t`", !v.Interface().(components.Addon).Disabled)
	}
	if v.IsZero() {
		switch v.Kind() {
		case reflect.Bool:
			return "`false`"
		case reflect.Int:
			return "`0`"
		}
		return "-"
	}
	j, _ := json.Marshal(v.Interface())
	return "`" + string(j) + "`"
}

// FieldDocs reads the doc comment of every struct field in package
// components from its source, keyed "Type.Field", each one line.
func FieldDocs() (map[string]string, error) {
	_, self, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(self), "..", "..", "components")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	docs := map[string]string{}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("reading the components' docs: %w", err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			spec, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			if st, ok := spec.Type.(*ast.StructType); ok {
				for _, field := range st.Fields.List {
					for _, name := range field.Names {
						docs[spec.Name.Name+"."+name.Name] = strings.Join(strings.Fields(field.Doc.Text()), " ")
					}
				}
			}
			return false
		})
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no components source in %s: the reference is generated from a kubeha checkout", dir)
	}
	return docs, nil
}

// Markers around the generated reference in the README.
const (
	ReferenceStart = "<!-- config-reference:start (make docs writes this; do not edit) -->\n"
	ReferenceEnd   = "<!-- config-reference:end -->"
)

// SpliceReference replaces the text between the markers in doc with the
// current Reference.
func SpliceReference(doc string) (string, error) {
	before, rest, ok := strings.Cut(doc, ReferenceStart)
	if !ok {
		return "", fmt.Errorf("no %q marker", strings.TrimSpace(ReferenceStart))
	}
	_, after, ok := strings.Cut(rest, ReferenceEnd)
	if !ok {
		return "", fmt.Errorf("no %q marker", ReferenceEnd)
	}
	ref, err := Reference()
	if err != nil {
		return "", err
	}
	return before + ReferenceStart + ref + ReferenceEnd + after, nil
}
