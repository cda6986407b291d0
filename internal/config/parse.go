package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Parse turns a stack's raw configuration, keyed "namespace:key" with values
// as Pulumi hands them to a program (plain strings, JSON for lists and
// objects), into a validated Stack. Keys of other namespaces are ignored,
// except aws:region. Every problem is reported, each naming its key.
func Parse(raw map[string]string) (Stack, error) {
	s := Default()
	s.Region = raw[RegionKey]

	var errs Errors
	top := reflect.ValueOf(&s).Elem()
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		name, ok := strings.CutPrefix(key, Namespace+":")
		if !ok {
			continue
		}
		field, found := fieldByKey(top, name)
		if !found {
			errs = append(errs, unknownKey(key, top.Type()))
			continue
		}
		value, err := rawValue(raw[key], field.Kind())
		if err != nil {
			errs = append(errs, &FieldError{Key: key, Value: quote(raw[key]), Allowed: kindName(field.Type())})
			continue
		}
		errs = append(errs, decode(key, value, field)...)
	}
	if len(errs) > 0 {
		return Stack{}, errs
	}
	if err := s.Validate(); err != nil {
		return Stack{}, err
	}
	return s, nil
}

// rawValue reads one top-level value: Pulumi passes strings bare and
// everything else as JSON.
func rawValue(text string, kind reflect.Kind) (any, error) {
	if kind == reflect.String {
		return text, nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return v, nil
}

// decode type-checks a JSON-shaped value against out's type and stores it,
// so that every wrong type or unknown key is reported with its full path.
func decode(path string, in any, out reflect.Value) Errors {
	wrongType := Errors{{Key: path, Value: describe(in), Allowed: kindName(out.Type())}}
	switch out.Kind() {
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			return wrongType
		}
		out.SetString(s)
	case reflect.Bool:
		b, ok := in.(bool)
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
	case reflect.Slice:
		items, ok := in.([]any)
		if !ok {
			return wrongType
		}
		var errs Errors
		list := reflect.MakeSlice(out.Type(), len(items), len(items))
		for i, item := range items {
			elem := list.Index(i)
			elem.Set(elementDefault(elem.Type()))
			errs = append(errs, decode(fmt.Sprintf("%s[%d]", path, i), item, elem)...)
		}
		out.Set(list)
		return errs
	case reflect.Struct:
		fields, ok := in.(map[string]any)
		if !ok {
			return wrongType
		}
		var errs Errors
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			field, found := fieldByKey(out, name)
			if !found {
				errs = append(errs, unknownKey(path+"."+name, out.Type()))
				continue
			}
			errs = append(errs, decode(path+"."+name, fields[name], field)...)
		}
		return errs
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", out.Type(), path))
	}
	return nil
}

// elementDefault is the value a new list element starts from.
func elementDefault(t reflect.Type) reflect.Value {
	if t == reflect.TypeOf(WorkerPool{}) {
		return reflect.ValueOf(DefaultWorkerPool())
	}
	return reflect.Zero(t)
}

// fieldByKey finds the struct field whose json tag is key. Fields with no
// key (Region, read from aws:region) are never matched.
func fieldByKey(v reflect.Value, key string) (reflect.Value, bool) {
	if key == "" {
		return reflect.Value{}, false
	}
	for i := 0; i < v.NumField(); i++ {
		if jsonKey(v.Type().Field(i)) == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func jsonKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func unknownKey(path string, t reflect.Type) *FieldError {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k := jsonKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return &FieldError{Key: path, Value: "unknown key", Allowed: "one of " + strings.Join(keys, ", ")}
}

// kindName says in words what a config value of type t must be.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a whole number"
	case reflect.Slice:
		return "a list of " + typeWord(t.Elem()) + "s"
	default:
		return "an object"
	}
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
	return fmt.Sprintf("%q", s)
}
