package config

import "strings"

// FieldError is one rejected config value: the key as a user types it in
// `pulumi config set --path`, the value given, and what would be accepted.
type FieldError struct {
	Key     string
	Value   string
	Allowed string
}

func (e *FieldError) Error() string {
	return e.Key + ": " + e.Value + "; allowed: " + e.Allowed
}

// Errors is every problem found in one stack's configuration.
type Errors []*FieldError

func (errs Errors) Error() string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = "  - " + e.Error()
	}
	return "invalid stack configuration:\n" + strings.Join(lines, "\n")
}

// Keys lists the keys named, in order.
func (errs Errors) Keys() []string {
	keys := make([]string, len(errs))
	for i, e := range errs {
		keys[i] = e.Key
	}
	return keys
}
