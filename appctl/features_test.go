package appctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixtureFiles returns the files of testdata matching pattern: the
// dpif/show-dp-features output of every OVS release (testdata/README.md).
func fixtureFiles(t testing.TB, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no testdata/%s", pattern)
	return files
}

// numeric are the only lines with a number, not Yes/No.
var numeric = map[string]bool{"Sample nesting": true, "Max dp_hash algorithm": true, "Max VLAN headers": true, "Max MPLS depth": true}

// numericValues are the numbers the fixtures hold (a userspace datapath's).
var numericValues = map[string]int64{"Sample nesting": 10, "Max dp_hash algorithm": 1, "Max VLAN headers": 2, "Max MPLS depth": 3}

func TestParseDPFeaturesEveryRelease(t *testing.T) {
	files := fixtureFiles(t, "ovs-*.txt")
	// 2.8.0 to 3.7.0, 3.4.0 in JSON twice more: a missing file is a test less.
	require.Len(t, files, 20)
	for _, file := range files {
		base := filepath.Base(file)
		t.Run(base, func(t *testing.T) {
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			fs, err := ParseDPFeatures(string(b))
			require.NoError(t, err)

			// The titles in the text, in order: from the lines of the plain
			// form, or from the plain text inside the JSON wrapper.
			plain := string(b)
			if strings.Contains(base, "json") {
				plainFile := filepath.Join(filepath.Dir(file), strings.Split(base, "-format-json")[0]+".txt")
				if pb, err := os.ReadFile(plainFile); err == nil {
					plain = string(pb)
				} else {
					plain = ""
				}
			}
			if plain != "" {
				var names []string
				for line := range strings.Lines(plain) {
					name, _, _ := strings.Cut(line, ": ")
					names = append(names, name)
				}
				var got []string
				for _, f := range fs {
					got = append(got, f.Name)
				}
				assert.Equal(t, names, got, "every line, in OVS's order")
			}
			assert.GreaterOrEqual(t, len(fs), 18)

			for _, f := range fs {
				if numeric[f.Name] {
					assert.IsType(t, int64(0), f.Value, f.Name)
				} else {
					assert.Equal(t, true, f.Value, f.Name)
				}
			}
			for _, name := range []string{"recirc", "RECIRC", "Recirc"} {
				r, ok := fs.Get(name)
				assert.True(t, ok, "names match case-insensitively")
				assert.Equal(t, Feature{"Recirc", true}, r)
			}
			for name, want := range numericValues {
				f, ok := fs.Get(name)
				if name == "Max dp_hash algorithm" && (strings.HasPrefix(base, "ovs-2.8.") || strings.HasPrefix(base, "ovs-2.9.")) {
					assert.False(t, ok, "%s came with 2.10", name)
					continue
				}
				require.True(t, ok, name)
				assert.Equal(t, Feature{name, want}, f)
			}
			_, hasPsample := fs.Get("psample action")
			assert.Equal(t, base >= "ovs-3.4", hasPsample, "psample action from 3.4 on")
			if hasPsample {
				assert.Contains(t, fs.Map(), "psample action", "the lower-case title is kept as printed")
			}
			_, hasVarUserdata := fs.Get("Variable length userdata")
			assert.Equal(t, strings.HasPrefix(base, "ovs-2.8."), hasVarUserdata)
		})
	}
}

func TestParseDPFeaturesShapes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Features
		err  string // substring of the ErrMalformed error
	}{
		{"CRLF and blank lines", "Recirc: Yes\r\n\r\n\nMax MPLS depth: 3\r\n", Features{{"Recirc", true}, {"Max MPLS depth", int64(3)}}, ""},
		{"trailing spaces, no final newline", "  Ufid:   No  \nTeleport: maybe", Features{{"Ufid", false}, {"Teleport", "maybe"}}, ""},
		{"unknown names kept", "Warp drive: Yes\nRecirc: No\n", Features{{"Warp drive", true}, {"Recirc", false}}, ""},
		{"numbers and other values", "A: -1\nB: yes\nC: 1.5\nD: 99999999999\nE: \n", Features{{"A", int64(-1)}, {"B", "yes"}, {"C", "1.5"}, {"D", int64(99999999999)}, {"E", ""}}, ""},
		{"only the first colon splits", "Mode: a: b\n", Features{{"Mode", "a: b"}}, ""},
		{"JSON wrapper", `{"reply":"Recirc: Yes\nCT zone: No\n","reply-format":"plain"}`, Features{{"Recirc", true}, {"CT zone", false}}, ""},
		{"JSON wrapper with spaces", " {\n  \"reply\": \"Recirc: Yes\\n\",\n  \"reply-format\": \"plain\"}\n", Features{{"Recirc", true}}, ""},
		{"empty", "", nil, "no features"},
		{"blank only", "\n\r\n  \n", nil, "no features"},
		{"JSON wrapper around nothing", `{"reply":"","reply-format":"plain"}`, nil, "no features"},
		{"no colon", "Recirc Yes\n", nil, `feature line "Recirc Yes"`},
		{"colon without a space", "Recirc:Yes\n", nil, `feature line "Recirc:Yes"`},
		{"name only", "Recirc:\n", nil, `feature line "Recirc:"`},
		{"no name", ": Yes\n", nil, `feature line ": Yes"`},
		{"good lines then a bad one", "Recirc: Yes\nboom\n", nil, `feature line "boom"`},
		{"long bad line cut", strings.Repeat("z", 100), nil, strings.Repeat("z", 60) + `..."`},
		{"JSON without reply", `{"result": 1}`, nil, `JSON answer without a "reply"`},
		{"broken JSON", `{"reply": "x`, nil, `JSON answer without a "reply"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDPFeatures(tt.in)
			if tt.err != "" {
				assert.ErrorIs(t, err, ErrMalformed)
				assert.ErrorContains(t, err, tt.err)
				assert.Nil(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestFeaturesGetAndMap(t *testing.T) {
	fs := Features{{"Recirc", true}, {"Max VLAN headers", int64(2)}, {"psample action", false}}
	assert.Equal(t, map[string]any{"Recirc": true, "Max VLAN headers": int64(2), "psample action": false}, fs.Map())
	f, ok := fs.Get("max vlan HEADERS")
	assert.True(t, ok)
	assert.Equal(t, Feature{"Max VLAN headers", int64(2)}, f)
	f, ok = fs.Get("nope")
	assert.False(t, ok)
	assert.Equal(t, Feature{}, f)
	assert.Empty(t, Features(nil).Map())
}

func FuzzParseDPFeatures(f *testing.F) {
	// Every fixture, and the README: text that is not feature lines. The
	// output of a live ovs-vswitchd is in testdata/fuzz.
	for _, file := range append(fixtureFiles(f, "ovs-*.txt"), filepath.Join("testdata", "README.md")) {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(string(b))
	}
	f.Add("Recirc: Yes\r\n\r\nx: 1")
	f.Add(`{"reply":"Recirc: Yes\n"}`)
	f.Fuzz(func(t *testing.T, text string) {
		fs, err := ParseDPFeatures(text)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			if fs != nil {
				t.Fatal("features with an error")
			}
			return
		}
		if len(fs) == 0 {
			t.Fatal("success without features")
		}
		m := fs.Map()
		for _, x := range fs {
			if x.Name == "" || strings.TrimSpace(x.Name) != x.Name {
				t.Fatalf("bad name %q", x.Name)
			}
			switch v := x.Value.(type) {
			case bool, int64:
			case string:
				if strings.TrimSpace(v) != v || v == "Yes" || v == "No" {
					t.Fatalf("bad value %q", v)
				}
			default:
				t.Fatalf("value of type %T", x.Value)
			}
			if _, ok := m[x.Name]; !ok {
				t.Fatalf("%q missing from Map", x.Name)
			}
			if g, ok := fs.Get(x.Name); !ok || !strings.EqualFold(g.Name, x.Name) {
				t.Fatalf("Get(%q) = %v, %v", x.Name, g, ok)
			}
		}
	})
}

func BenchmarkParseDPFeatures(b *testing.B) {
	data, err := os.ReadFile(fixtureFiles(b, "ovs-3.1.0.txt")[0])
	require.NoError(b, err)
	text := string(data)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDPFeatures(text); err != nil {
			b.Fatal(err)
		}
	}
}
