package components

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one refused argument: the field as a Go path from the
// component's args (Etcd.VolumeSizeGiB), its stack key when it has one
// (kubeha:etcd.volumeSizeGiB), the value given and what is allowed.
// A stack file and a Go program get the same FieldError for the same input.
type FieldError struct {
	Field   string
	Key     string
	Value   string
	Allowed string
}

func (e *FieldError) Error() string {
	name := e.Field
	if e.Key != "" {
		name += " (" + e.Key + ")"
	}
	return name + ": " + e.Value + "; allowed: " + e.Allowed
}

// FieldErrors is every problem found in one set of args.
type FieldErrors []*FieldError

func (errs FieldErrors) Error() string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = "  - " + e.Error()
	}
	return "invalid kubeha arguments:\n" + strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each FieldError.
func (errs FieldErrors) Unwrap() []error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return out
}

// StackNamespace is the Pulumi config namespace of every kubeha key;
// RegionKey, the AWS provider's, is where a stack sets ClusterArgs.Region.
const (
	StackNamespace = "kubeha"
	RegionKey      = "aws:region"
)

// StackKey is the stack key of a ClusterArgs field path such as
// "Workers[1].MinPerZone": "kubeha:workers[1].minPerZone", read from the
// json tags. Fields no stack key sets give "".
func StackKey(field string) string {
	if field == "Region" {
		return RegionKey
	}
	t := reflect.TypeOf(ClusterArgs{})
	var key strings.Builder
	for _, part := range strings.Split(field, ".") {
		name, index, _ := strings.Cut(part, "[")
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return ""
		}
		f, ok := t.FieldByName(name)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !ok || tag == "" || tag == "-" {
			return ""
		}
		if key.Len() > 0 {
			key.WriteByte('.')
		}
		key.WriteString(tag)
		if index != "" {
			key.WriteString("[" + index)
		}
		t = f.Type
	}
	return StackNamespace + ":" + key.String()
}

// checker collects FieldErrors under a field path prefix.
type checker struct {
	prefix string
	errs   *FieldErrors
}

func newChecker(prefix string) checker { return checker{prefix: prefix, errs: &FieldErrors{}} }

// at is a checker for a nested struct: at("Etcd") names Etcd.Members.
func (c checker) at(field string) checker {
	return checker{prefix: c.prefix + field + ".", errs: c.errs}
}

// errsOn are the errors found so far on field.
func (c checker) errsOn(field string) []*FieldError {
	var found []*FieldError
	for _, e := range *c.errs {
		if e.Field == c.prefix+field {
			found = append(found, e)
		}
	}
	return found
}

func (c checker) add(field, value, allowed string) {
	*c.errs = append(*c.errs, &FieldError{Field: c.prefix + field, Value: value, Allowed: allowed})
}

// err is the errors found, or nil.
func (c checker) err() error {
	if len(*c.errs) == 0 {
		return nil
	}
	return *c.errs
}

func (c checker) between(field string, value, lo, hi int) {
	if value < lo || value > hi {
		c.add(field, strconv.Itoa(value), fmt.Sprintf("%d to %d", lo, hi))
	}
}

func (c checker) matches(field, value string, pattern *regexp.Regexp, allowed string) {
	switch {
	case value == "":
		c.add(field, "not set", allowed)
	case !pattern.MatchString(value):
		c.add(field, quote(value), allowed)
	}
}

func (c checker) oneOf(field, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		shown := quote(value)
		if value == "" {
			shown = "not set"
		}
		c.add(field, shown, strings.Join(allowed, ", "))
	}
}

// cidr parses a canonical IPv4 CIDR, reporting it if it is not one.
func (c checker) cidr(field, value string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(value)
	if err != nil || !p.Addr().Is4() || p.Masked() != p {
		c.add(field, quote(value), "an IPv4 CIDR with no host bits set, such as 10.0.0.0/16")
		return netip.Prefix{}, false
	}
	return p, true
}

// documentationRanges are RFC 5737's: examples, which no client comes
// from, so an allowlist holding one is a placeholder left in.
var documentationRanges = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
}

// allowlist checks CIDRs that open a port beyond the VPC: no
// documentation range, and in production not the whole internet.
func (c checker) allowlist(field string, cidrs []string, production bool) {
	for i, s := range cidrs {
		f := fmt.Sprintf("%s[%d]", field, i)
		p, ok := c.cidr(f, s)
		if !ok {
			continue
		}
		if p.Bits() == 0 && production {
			c.add(f, quote(s), "a range narrower than the whole internet in prod")
		}
		for _, doc := range documentationRanges {
			if p.Overlaps(doc) && p.Bits() > 0 {
				c.add(f, quote(s), "the addresses your clients really come from; "+doc.String()+" is a documentation range (RFC 5737) that no client has")
			}
		}
	}
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}

var (
	clusterNamePattern  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,26}[a-z0-9]$`)
	instanceTypePattern = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9]+$`)
	clusterNameAllowed  = "2 to 28 of a-z, 0-9 and '-', starting with a letter and ending with a letter or digit (it names S3 buckets and IAM roles)"
)

// clusterName: every component names AWS resources after the
// cluster, some with S3's and IAM's strict rules.
func (c checker) clusterName(field, name string) {
	c.matches(field, name, clusterNamePattern, clusterNameAllowed)
}

func (c checker) instanceType(field, value string) {
	c.matches(field, value, instanceTypePattern, "an EC2 instance type such as m6i.large")
}
