package appctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
)

// The fuzz targets' seed corpus holds what a real ovs-vswitchd says, captured
// from the sandbox by TestCaptureFuzzSeeds (make fuzz-seeds) into
// testdata/fuzz/<target>/ovs-<version>-<what>.

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false,
	"TestCaptureFuzzSeeds writes what the sandbox's ovs-vswitchd says into testdata/fuzz")

// seedRequests are the unixctl requests whose replies are captured, the
// first before ovs-vswitchd has its configuration (OVSDB not started yet),
// the rest on one connection once it has br-int and br-ex with their ports.
// A request's id is its index plus one.
var seedRequests = []struct {
	name        string
	method      string
	params      []string
	beforeOVSDB bool
	isError     bool
}{
	{"not-registered", "dpif/show-dp-features", []string{"br-int"}, true, true},
	{"version", "version", nil, false, false},
	{"dp-features", "dpif/show-dp-features", []string{"br-int"}, false, false},
	{"no-such-bridge", "dpif/show-dp-features", []string{"br-nope"}, false, true},
	{"dpif-show", "dpif/show", nil, false, false},
	{"unknown-command", "no/such-command", nil, false, true},
	{"too-few-arguments", "dpif/show-dp-features", nil, false, true},
	{"too-many-arguments", "dpif/show-dp-features", []string{"br-int", "br-ex"}, false, true},
}

// The ports dpif/show lists: added one by one, so that each gets the same
// port numbers on every capture.
var seedPorts = [][]string{
	{"add-port", "br-int", "gw0", "--", "set", "interface", "gw0", "type=internal"},
	{"add-port", "br-int", "p-vx", "--", "set", "interface", "p-vx", "type=vxlan", "options:remote_ip=192.0.2.1"},
	{"add-port", "br-int", "patch-a", "--", "set", "interface", "patch-a", "type=patch", "options:peer=patch-b"},
	{"add-port", "br-ex", "patch-b", "--", "set", "interface", "patch-b", "type=patch", "options:peer=patch-a"},
}

// fuzzSeed is one file of a seed corpus.
type fuzzSeed struct {
	target, name string
	value        []byte
}

// path is where the seed lives in testdata.
func (s fuzzSeed) path() string { return filepath.Join("testdata", "fuzz", s.target, s.name) }

// Each target's argument type, as the corpus files spell it.
var fuzzTargetType = map[string]string{
	"FuzzParseDPFeatures": "string",
	"FuzzParseDPIFShow":   "string",
	"FuzzDecodeReply":     "[]byte",
}

// encode is the file in the `go test fuzz v1` format.
func (s fuzzSeed) encode() []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n%s(%q)\n", fuzzTargetType[s.target], s.value)
}

// decodeFuzzSeed reads a corpus file of one value of type typ.
func decodeFuzzSeed(b []byte, typ string) ([]byte, error) {
	header, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok || string(header) != "go test fuzz v1" {
		return nil, errors.New("no `go test fuzz v1` header")
	}
	text := strings.TrimSpace(string(rest))
	quoted, ok := strings.CutPrefix(text, typ+"(")
	if !ok || !strings.HasSuffix(quoted, ")") {
		return nil, fmt.Errorf("not one %s value: %q", typ, text)
	}
	v, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
	if err != nil {
		return nil, fmt.Errorf("%s value: %w", typ, err)
	}
	return []byte(v), nil
}

// captureFuzzSeeds asks the sandbox's ovs-vswitchd seedRequests and returns
// the seeds its answers make, named after version.
func captureFuzzSeeds(t *testing.T) (version string, seeds []fuzzSeed) {
	s := ovstest.New(t)
	s.StartVSwitchd()
	raw := map[string][]byte{}
	ask(t, s, true, raw)
	s.StartOVSDB()
	s.AddBridge("br-int")
	s.AddBridge("br-ex")
	for _, args := range seedPorts {
		s.Vsctl(args...)
	}
	stream := ask(t, s, false, raw)

	version, err := ParseVersion(decoded(t, raw["version"]).text)
	require.NoError(t, err)
	prefix := "ovs-" + version + "-"
	for _, r := range seedRequests {
		seeds = append(seeds, fuzzSeed{"FuzzDecodeReply", prefix + r.name, raw[r.name]})
	}
	seeds = append(seeds,
		fuzzSeed{"FuzzDecodeReply", prefix + "stream", stream},
		fuzzSeed{"FuzzParseDPFeatures", prefix + "netdev", []byte(decoded(t, raw["dp-features"]).text)},
		fuzzSeed{"FuzzParseDPIFShow", prefix + "netdev", []byte(decoded(t, raw["dpif-show"]).text)},
	)
	return version, seeds
}

// ask sends the seedRequests of one phase over a new connection to the
// running ovs-vswitchd, one at a time, and records each raw reply by name;
// it returns every byte read, in order.
func ask(t *testing.T, s *ovstest.Sandbox, beforeOVSDB bool, raw map[string][]byte) []byte {
	t.Helper()
	target, err := Discover(s.RunDir())
	require.NoError(t, err)
	nc, err := net.Dial("unix", target.Socket)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.SetDeadline(time.Now().Add(time.Minute)))
	var stream bytes.Buffer
	fr := newFrameReader(io.TeeReader(nc, &stream), maxReplySize)
	for i, r := range seedRequests {
		if r.beforeOVSDB != beforeOVSDB {
			continue
		}
		req, err := json.Marshal(map[string]any{"id": i + 1, "method": r.method, "params": append([]string{}, r.params...)})
		require.NoError(t, err)
		_, err = nc.Write(req)
		require.NoError(t, err)
		frame, err := fr.next()
		require.NoError(t, err, "reply to %s", r.name)
		raw[r.name] = bytes.Clone(frame)
	}
	return stream.Bytes()
}

func decoded(t *testing.T, frame []byte) reply {
	t.Helper()
	r, err := decodeReply(frame)
	require.NoError(t, err, "%s", frame)
	return r
}

// TestCaptureFuzzSeeds captures the seeds from the sandbox's ovs-vswitchd.
// With -update-fuzz-seeds it writes them into testdata/fuzz; without, it
// fails unless the committed seeds of the installed release are what this
// ovs-vswitchd says.
func TestCaptureFuzzSeeds(t *testing.T) {
	version, seeds := captureFuzzSeeds(t)
	if *updateFuzzSeeds {
		for _, s := range seeds {
			require.NoError(t, os.MkdirAll(filepath.Dir(s.path()), 0o755))
			require.NoError(t, os.WriteFile(s.path(), s.encode(), 0o644))
			t.Logf("wrote %s", s.path())
		}
		return
	}
	committed, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "*", "ovs-"+version+"-*"))
	if len(committed) == 0 {
		testutil.SkipUnlessCI(t, "no seeds of Open vSwitch %s in testdata/fuzz: make fuzz-seeds captures them", version)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s.path())
		if !assert.NoError(t, err, "make fuzz-seeds writes it") {
			continue
		}
		assert.Equal(t, string(s.encode()), string(b), "%s: what ovs-vswitchd %s says now (make fuzz-seeds)", s.path(), version)
	}
	assert.Len(t, committed, len(seeds), "committed seeds of %s: %q", version, committed)
}

// TestCommittedFuzzSeeds checks that what the captured seeds hold still
// parses as what it is, whatever Open vSwitch is installed here.
func TestCommittedFuzzSeeds(t *testing.T) {
	seeds := func(target, name string) map[string][]byte {
		t.Helper()
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "ovs-*-"+name))
		require.NoError(t, err)
		require.NotEmpty(t, files, "no captured %s seed of %s (make fuzz-seeds)", name, target)
		out := map[string][]byte{}
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			v, err := decodeFuzzSeed(b, fuzzTargetType[target])
			require.NoError(t, err, f)
			out[f] = v
		}
		return out
	}

	for f, text := range seeds("FuzzParseDPFeatures", "netdev") {
		fs, err := ParseDPFeatures(string(text))
		if assert.NoError(t, err, f) {
			assert.GreaterOrEqual(t, len(fs), 18, f)
			recirc, _ := fs.Get("Recirc")
			assert.Equal(t, true, recirc.Value, f)
		}
	}

	for f, text := range seeds("FuzzParseDPIFShow", "netdev") {
		ports, err := ParseDPIFShow(string(text), nil)
		if assert.NoError(t, err, f) {
			for _, name := range []string{"br-int", "br-ex", "gw0", "p-vx", "patch-a", "patch-b"} {
				assert.Positive(t, ports[name], "%s: port %s", f, name)
			}
		}
	}

	for i, r := range seedRequests {
		for f, frame := range seeds("FuzzDecodeReply", r.name) {
			got, err := decodeReply(frame)
			if assert.NoError(t, err, f) {
				assert.Equal(t, reply{id: uint64(i + 1), text: got.text, isError: r.isError}, got, f)
				assert.NotEmpty(t, got.text, f)
			}
		}
	}
	var wantIDs []uint64
	for i, r := range seedRequests {
		if !r.beforeOVSDB {
			wantIDs = append(wantIDs, uint64(i+1))
		}
	}
	for f, stream := range seeds("FuzzDecodeReply", "stream") {
		split, err := frames(stream, maxReplySize, readers["whole"])
		assert.ErrorIs(t, err, io.EOF, f)
		var ids []uint64
		for _, frame := range split {
			r, err := decodeReply([]byte(frame))
			require.NoError(t, err, "%s: %s", f, frame)
			ids = append(ids, r.id)
		}
		assert.Equal(t, wantIDs, ids, "%s: the replies of one connection, in order", f)
	}
}
