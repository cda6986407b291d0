// Package config maps a stack's configuration keys onto
// components.ClusterArgs, whose json tags are the keys. It defines no
// option, default or rule of its own: those live with each component, so
// a stack file and a Go program importing the components are read the
// same way. It also writes the config reference from the same types.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/kubeha/kubeha/components"
)

// Namespace is the Pulumi config namespace of every kubeha key.
const Namespace = components.StackNamespace

// RegionKey is the AWS provider's region key, which kubeha reads too.
const RegionKey = components.RegionKey

// Parse turns a stack's raw configuration, keyed "namespace:key" with values
// as Pulumi hands them to a program (plain strings, JSON for lists and
// objects), into ClusterArgs with every default filled in and every rule
// checked. Keys of other namespaces are ignored, except aws:region. Every
// problem is reported, each naming its key and field.
func Parse(raw map[string]string) (components.ClusterArgs, error) {
	args, err := Decode(raw)
	if err != nil {
		return components.ClusterArgs{}, err
	}
	args = args.WithDefaults()
	if err := args.Validate(); err != nil {
		return components.ClusterArgs{}, err
	}
	return args, nil
}

// Decode maps raw onto ClusterArgs and type-checks each value, without
// defaults or validation.
func Decode(raw map[string]string) (components.ClusterArgs, error) {
	var args components.ClusterArgs
	args.Region = raw[RegionKey]
	var errs components.FieldErrors
	top := reflect.ValueOf(&args).Elem()
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		name, ok := strings.CutPrefix(key, Namespace+":")
		if !ok {
			continue
		}
		field, goName, found := fieldByKey(top, name)
		if !found {
			errs = append(errs, unknownKey(key, "", top.Type()))
			continue
		}
		value, err := rawValue(raw[key], field.Type())
		if err != nil {
			errs = append(errs, &components.FieldError{Field: goName, Key: key, Value: quote(raw[key]), Allowed: kindName(field.Type())})
			continue
		}
		errs = append(errs, decode(path{key, goName}, value, field)...)
	}
	if len(errs) > 0 {
		return components.ClusterArgs{}, errs
	}
	return args, nil
}

// path is where a value sits, as a stack key and as a Go field path.
type path struct{ key, field string }

func (p path) child(key, field string) path {
	return path{p.key + "." + key, p.field + "." + field}
}

func (p path) index(i int) path {
	return path{fmt.Sprintf("%s[%d]", p.key, i), fmt.Sprintf("%s[%d]", p.field, i)}
}

// Types the decoder treats specially.
var (
	stringInputType = reflect.TypeOf((*pulumi.StringInput)(nil)).Elem()
	addonType       = reflect.TypeOf(components.Addon{})
)

// rawValue reads one top-level value: Pulumi passes strings bare and
// everything else as JSON. A bool stays text, which decode reads as
// Pulumi's GetBool does.
func rawValue(text string, t reflect.Type) (any, error) {
	isBool := t.Kind() == reflect.Bool || (t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Bool)
	if t.Kind() == reflect.String || t == stringInputType || isBool {
		return text, nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil && dec.More() {
		err = fmt.Errorf("trailing data")
	}
	return v, err
}

// decode type-checks a JSON-shaped value against out's type and stores it,
// so that every wrong type or unknown key is reported with its full path.
func decode(at path, in any, out reflect.Value) components.FieldErrors {
	wrongType := components.FieldErrors{{Field: at.field, Key: at.key, Value: describe(in), Allowed: kindName(out.Type())}}
	if in == nil {
		// null: the key is as good as unset.
		out.Set(reflect.Zero(out.Type()))
		return nil
	}
	switch {
	case out.Type() == stringInputType:
		s, ok := in.(string)
		if !ok {
			return wrongType
		}
		out.Set(reflect.ValueOf(pulumi.String(s)))
		return nil
	case out.Type() == addonType:
		// An add-on may be just on or off.
		if on, ok := asBool(in); ok {
			out.Set(reflect.ValueOf(components.Addon{Disabled: !on}))
			return nil
		}
	}
	switch out.Kind() {
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			return wrongType
		}
		out.SetString(s)
	case reflect.Bool:
		b, ok := asBool(in)
		if !ok {
			return wrongType
		}
		out.SetBool(b)
	case reflect.Int:
		n, ok := in.(json.Number)
		if !ok {
			return wrongType
		}
		i, err := n.Int64()
		if err != nil || i != int64(int32(i)) {
			return wrongType
		}
		out.SetInt(i)
	case reflect.Pointer:
		v := reflect.New(out.Type().Elem())
		if errs := decode(at, in, v.Elem()); len(errs) > 0 {
			return errs
		}
		out.Set(v)
	case reflect.Interface:
		// Addon values: any JSON value.
		out.Set(reflect.ValueOf(in))
	case reflect.Slice:
		items, ok := in.([]any)
		if !ok {
			return wrongType
		}
		var errs components.FieldErrors
		list := reflect.MakeSlice(out.Type(), len(items), len(items))
		for i, item := range items {
			errs = append(errs, decode(at.index(i), item, list.Index(i))...)
		}
		out.Set(list)
		return errs
	case reflect.Map:
		entries, ok := in.(map[string]any)
		if !ok {
			return wrongType
		}
		var errs components.FieldErrors
		m := reflect.MakeMapWithSize(out.Type(), len(entries))
		for _, k := range slices.Sorted(maps.Keys(entries)) {
			v := reflect.New(out.Type().Elem()).Elem()
			errs = append(errs, decode(path{at.key + "." + k, at.field + "[" + k + "]"}, entries[k], v)...)
			m.SetMapIndex(reflect.ValueOf(k), v)
		}
		out.Set(m)
		return errs
	case reflect.Struct:
		fields, ok := in.(map[string]any)
		if !ok {
			return wrongType
		}
		var errs components.FieldErrors
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			field, goName, found := fieldByKey(out, name)
			if !found {
				errs = append(errs, unknownKey(at.key+"."+name, at.field, out.Type()))
				continue
			}
			errs = append(errs, decode(at.child(name, goName), fields[name], field)...)
		}
		return errs
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", out.Type(), at.key))
	}
	return nil
}

func asBool(in any) (bool, bool) {
	switch v := in.(type) {
	case bool:
		return v, true
	case string:
		b, err := strconv.ParseBool(v)
		return b, err == nil
	}
	return false, false
}

// fieldByKey finds the struct field whose json tag is key, and its Go name.
func fieldByKey(v reflect.Value, key string) (reflect.Value, string, bool) {
	if key == "" {
		return reflect.Value{}, "", false
	}
	for i := 0; i < v.NumField(); i++ {
		if f := v.Type().Field(i); jsonKey(f) == key {
			return v.Field(i), f.Name, true
		}
	}
	return reflect.Value{}, "", false
}

func jsonKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func unknownKey(key, parent string, t reflect.Type) *components.FieldError {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k := jsonKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return &components.FieldError{Field: parent, Key: key, Value: "unknown key", Allowed: "one of " + strings.Join(keys, ", ")}
}

// kindName says in words what a config value of type t must be.
func kindName(t reflect.Type) string {
	switch {
	case t == stringInputType:
		return "a string"
	case t == addonType:
		return "true, false or an object of disabled, version, values"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a whole number"
	case reflect.Pointer:
		return kindName(t.Elem())
	case reflect.Slice:
		return "a list of " + typeWord(t.Elem()) + "s"
	case reflect.Map:
		return "a map of " + typeWord(t.Elem()) + "s"
	case reflect.Interface:
		return "any value"
	default:
		return "an object"
	}
}

// typeWord is kindName without its article: "list of strings".
func typeWord(t reflect.Type) string {
	return strings.TrimPrefix(strings.TrimPrefix(kindName(t), "a "), "an ")
}

// describe renders a decoded JSON value for an error message.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "empty"
	case string:
		return quote(v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprint(v)
	}
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}
