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

const fixtures = "../../shared/fixtures/dp-features"

// fixtureFiles returns the OVS releases' outputs, or the copies in testdata
// when the shared fixtures are not beside the checkout.
func fixtureFiles(t testing.TB) []string {
	files, _ := filepath.Glob(filepath.Join(fixtures, "ovs-*.txt"))
	if len(files) == 0 {
		files, _ = filepath.Glob("testdata/ovs-*.txt")
	}
	require.NotEmpty(t, files)
	return files
}

var numeric = map[string]bool{"Sample nesting": true, "Max dp_hash algorithm": true, "Max VLAN headers": true, "Max MPLS depth": true}

func TestParseDPFeaturesEveryRelease(t *testing.T) {
	for _, file := range fixtureFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			fs, err := ParseDPFeatures(string(b))
			require.NoError(t, err)
			text := string(b)
			if strings.HasPrefix(text, "{") {
				assert.Greater(t, len(fs), 20)
			} else {
				assert.Len(t, fs, strings.Count(text, "\n"), "one feature per line")
			}
			for _, f := range fs {
				if numeric[f.Name] {
					assert.IsType(t, int64(0), f.Value, f.Name)
				} else {
					assert.Equal(t, true, f.Value, f.Name)
				}
			}
			if !strings.HasPrefix(text, "{") {
				first, _, _ := strings.Cut(text, ":")
				assert.Equal(t, first, fs[0].Name, "OVS order kept")
			}
			r, ok := fs.Get("recirc")
			assert.True(t, ok, "names match case-insensitively")
			assert.Equal(t, "Recirc", r.Name)
			if base := filepath.Base(file); base >= "ovs-3.4" && base < "ovs-4" {
				p, ok := fs.Get("psample action")
				assert.True(t, ok)
				assert.Equal(t, "psample action", p.Name)
			}
		})
	}
}

func TestParseDPFeaturesShapes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Features
		err  error
	}{
		{"CRLF and blank lines", "Recirc: Yes\r\n\r\nMax MPLS depth: 3\r\n", Features{{"Recirc", true}, {"Max MPLS depth", int64(3)}}, nil},
		{"trailing spaces, no final newline", "  Ufid:   No  \nTeleport: maybe", Features{{"Ufid", false}, {"Teleport", "maybe"}}, nil},
		{"negative and odd values", "A: -1\nB: yes\nC: 1.5", Features{{"A", int64(-1)}, {"B", "yes"}, {"C", "1.5"}}, nil},
		{"JSON wrapper", `{"reply":"Recirc: Yes\nCT zone: No\n","reply-format":"plain"}`, Features{{"Recirc", true}, {"CT zone", false}}, nil},
		{"empty", "", nil, ErrMalformed},
		{"blank only", "\n\r\n  \n", nil, ErrMalformed},
		{"no colon", "Recirc Yes\n", nil, ErrMalformed},
		{"no name", ": Yes\n", nil, ErrMalformed},
		{"JSON without reply", `{"result": 1}`, nil, ErrMalformed},
		{"broken JSON", `{"reply": "x`, nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDPFeatures(tt.in)
			if tt.err != nil {
				assert.True(t, errors.Is(err, tt.err), "err = %v", err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestFeaturesMap(t *testing.T) {
	fs := Features{{"Recirc", true}, {"Max VLAN headers", int64(2)}}
	assert.Equal(t, map[string]any{"Recirc": true, "Max VLAN headers": int64(2)}, fs.Map())
	_, ok := fs.Get("nope")
	assert.False(t, ok)
}

func FuzzParseDPFeatures(f *testing.F) {
	for _, file := range fixtureFiles(f) {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(string(b))
	}
	f.Add("Recirc: Yes\r\n\r\nx:1")
	f.Fuzz(func(t *testing.T, text string) {
		fs, err := ParseDPFeatures(text)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if len(fs) == 0 {
			t.Fatal("success without features")
		}
		for _, x := range fs {
			if x.Name == "" || strings.TrimSpace(x.Name) != x.Name {
				t.Fatalf("bad name %q", x.Name)
			}
			switch x.Value.(type) {
			case bool, int64, string:
			default:
				t.Fatalf("value of type %T", x.Value)
			}
		}
	})
}

func BenchmarkParseDPFeatures(b *testing.B) {
	data, err := os.ReadFile(fixtureFiles(b)[0])
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDPFeatures(string(data)); err != nil {
			b.Fatal(err)
		}
	}
}
