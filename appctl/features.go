package appctl

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Feature is one line of dpif/show-dp-features. Value is a bool for Yes/No,
// an int64 for a number, and the trimmed text otherwise.
type Feature struct {
	Name  string
	Value any
}

// Features are a datapath's features in the order OVS prints them.
type Features []Feature

// ParseDPFeatures parses `Name: Yes|No|N` lines. Names differ between OVS
// releases, so lines are taken by name and unknown ones kept. It also takes
// the {"reply": "...", "reply-format": "plain"} wrapper of OVS 3.4+'s JSON
// output mode.
func ParseDPFeatures(text string) (Features, error) {
	if t := strings.TrimSpace(text); strings.HasPrefix(t, "{") {
		var w struct {
			Reply *string `json:"reply"`
		}
		if err := json.Unmarshal([]byte(t), &w); err != nil || w.Reply == nil {
			return nil, fmt.Errorf("%w: JSON answer without a \"reply\" text", ErrMalformed)
		}
		text = *w.Reply
	}
	fs := make(Features, 0, strings.Count(text, "\n")+1)
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ": ")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			line = strings.TrimSpace(line)
			if len(line) > 60 {
				line = line[:60] + "..."
			}
			return nil, fmt.Errorf("%w: feature line %q is not \"Name: value\"", ErrMalformed, line)
		}
		fs = append(fs, Feature{Name: name, Value: parseValue(strings.TrimSpace(value))})
	}
	if len(fs) == 0 {
		return nil, fmt.Errorf("%w: no features", ErrMalformed)
	}
	return fs, nil
}

func parseValue(v string) any {
	switch v {
	case "Yes":
		return true
	case "No":
		return false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	return v
}

// Get finds a feature by name, case-insensitively.
func (f Features) Get(name string) (Feature, bool) {
	name = strings.TrimSpace(name)
	for _, x := range f {
		if strings.EqualFold(x.Name, name) {
			return x, true
		}
	}
	return Feature{}, false
}

// Map returns the features keyed by their names as OVS prints them.
func (f Features) Map() map[string]any {
	m := make(map[string]any, len(f))
	for _, x := range f {
		m[x.Name] = x.Value
	}
	return m
}
