package gate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Requirement is one --require-feature: a datapath feature that must be Yes,
// or a numeric feature compared with a number.
type Requirement struct {
	Name  string // as the user wrote it; matched case-insensitively
	Op    string // "" for a Yes/No feature, else one of >=, >, =, <=, <
	Value int64
}

// operators are tried longest first, so ">=" is not read as ">".
var operators = []string{">=", "<=", ">", "<", "="}

// ParseRequirement parses NAME or NAME<op>N.
func ParseRequirement(s string) (Requirement, error) {
	if strings.TrimSpace(s) == "" {
		return Requirement{}, errors.New("empty requirement")
	}
	i := strings.IndexAny(s, "<>=")
	if i < 0 {
		return Requirement{Name: strings.TrimSpace(s)}, validName(s)
	}
	name := strings.TrimSpace(s[:i])
	if err := validName(name); err != nil {
		return Requirement{}, err
	}
	rest := s[i:]
	var op string
	for _, o := range operators {
		if strings.HasPrefix(rest, o) {
			op = o
			break
		}
	}
	num := strings.TrimSpace(rest[len(op):])
	if op == "" || strings.ContainsAny(num, "<>=") {
		return Requirement{}, fmt.Errorf("unknown operator in %q: want one of >=, >, =, <=, <", rest)
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return Requirement{}, fmt.Errorf("%q is not an integer", num)
	}
	return Requirement{Name: name, Op: op, Value: v}, nil
}

func validName(name string) error {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return errors.New("missing feature name")
	case strings.ContainsAny(name, ":\n"):
		return fmt.Errorf("feature name %q must not contain a colon or newline", name)
	}
	return nil
}

// String renders the requirement as the user would write it.
func (r Requirement) String() string {
	if r.Op == "" {
		return r.Name
	}
	return fmt.Sprintf("%s%s%d", r.Name, r.Op, r.Value)
}

// Unmet evaluates the requirement against one reported value (bool, int64 or
// string, as appctl parses them): why it is not met, or "" when it is.
func (r Requirement) Unmet(value any, reported bool) string {
	if !reported {
		return notReported(r.Name, nil)
	}
	if r.Op == "" {
		if b, ok := value.(bool); ok && b {
			return ""
		}
		return fmt.Sprintf("feature %q is %s, want Yes", r.Name, show(value))
	}
	n, ok := value.(int64)
	if !ok {
		return fmt.Sprintf("feature %q is %s, want a number %s %d", r.Name, show(value), r.Op, r.Value)
	}
	var met bool
	switch r.Op {
	case ">=":
		met = n >= r.Value
	case ">":
		met = n > r.Value
	case "=":
		met = n == r.Value
	case "<=":
		met = n <= r.Value
	case "<":
		met = n < r.Value
	}
	if met {
		return ""
	}
	return fmt.Sprintf("feature %q is %d, want %s %d", r.Name, n, r.Op, r.Value)
}

// show prints a feature value as OVS does.
func show(v any) string {
	switch v := v.(type) {
	case bool:
		if v {
			return "Yes"
		}
		return "No"
	case int64:
		return strconv.FormatInt(v, 10)
	case string:
		return strconv.Quote(v)
	}
	return fmt.Sprint(v)
}
