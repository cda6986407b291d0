package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Reference renders the config reference as a Markdown table, straight from
// the Stack struct, its doc tags and Default(), so the README cannot drift.
func Reference() string {
	var b strings.Builder
	b.WriteString("| key | type | default | description |\n|---|---|---|---|\n")
	b.WriteString("| `aws:region` | string | required | AWS region; every zone must be in it. |\n")
	writeRows(&b, "", reflect.ValueOf(Default()))
	return b.String()
}

func writeRows(b *strings.Builder, prefix string, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := jsonKey(f)
		if name == "" {
			continue
		}
		path := prefix + name
		switch {
		case f.Type.Kind() == reflect.Struct:
			writeRows(b, path+".", v.Field(i))
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			fmt.Fprintf(b, "| `%s:%s` | %s | %s | %s |\n", Namespace, path, typeWord(f.Type), defaultText(f, v.Field(i)), f.Tag.Get("doc"))
			writeRows(b, path+"[].", elementDefault(f.Type.Elem()))
		default:
			fmt.Fprintf(b, "| `%s:%s` | %s | %s | %s |\n", Namespace, path, typeWord(f.Type), defaultText(f, v.Field(i)), f.Tag.Get("doc"))
		}
	}
}

// defaultText shows a field's default, or "required" for keys a stack must set.
func defaultText(f reflect.StructField, v reflect.Value) string {
	if f.Tag.Get("required") == "true" {
		return "required"
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

// typeWord is kindName without its article: "list of strings".
func typeWord(t reflect.Type) string {
	return strings.TrimPrefix(strings.TrimPrefix(kindName(t), "a "), "an ")
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
	return before + ReferenceStart + Reference() + ReferenceEnd + after, nil
}
