package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/ovstest"
	"github.com/ovsgate/ovsgate/internal/testutil"
	"github.com/ovsgate/ovsgate/status"
)

// stateTimeout bounds the wait for serve to show a state: OVS reacts in
// milliseconds and ovsgate within a second; the rest is for a loaded machine.
const stateTimeout = 60 * time.Second

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(status.Schema))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource("schema.json", doc))
	sch, err := c.Compile("schema.json")
	require.NoError(t, err)
	return sch
}

// TestSchemaMatchesTypes holds the schema and the Go types to one set of
// fields: a field added to one and not the other fails here.
func TestSchemaMatchesTypes(t *testing.T) {
	var schema map[string]any
	require.NoError(t, json.Unmarshal(status.Schema, &schema))
	defs := schema["$defs"].(map[string]any)
	compare(t, "status", reflect.TypeFor[status.Status](), schema, defs)
	_, err := os.Stat("schema.json")
	require.NoError(t, err, "the schema's stable path is status/schema.json")
}

func compare(t *testing.T, where string, typ reflect.Type, node map[string]any, defs map[string]any) {
	t.Helper()
	if ref, ok := node["$ref"].(string); ok {
		node = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case typ == reflect.TypeFor[status.Timestamp]():
		assert.Equal(t, "string", node["type"], where)
		assert.Equal(t, "date-time", node["format"], where)
	case typ.Kind() == reflect.Struct:
		assert.Equal(t, "object", node["type"], where)
		props, _ := node["properties"].(map[string]any)
		var required []string
		for _, r := range node["required"].([]any) {
			required = append(required, r.(string))
		}
		var fields []string
		for f := range typ.Fields() {
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			require.NotEmpty(t, name, "%s.%s has no json name", where, f.Name)
			fields = append(fields, name)
			p, ok := props[name].(map[string]any)
			if !assert.True(t, ok, "%s.%s is not in the schema", where, name) {
				continue
			}
			assert.Equal(t, !strings.Contains(opts, "omitempty"), slices.Contains(required, name),
				"%s.%s: required in the schema exactly when the type always writes it", where, name)
			compare(t, where+"."+name, f.Type, p, defs)
		}
		for name := range props {
			assert.Contains(t, fields, name, "%s.%s is in the schema, not in the type", where, name)
		}
	case typ.Kind() == reflect.Slice:
		assert.Equal(t, "array", node["type"], where)
		compare(t, where+"[]", typ.Elem(), node["items"].(map[string]any), defs)
	case typ.Kind() == reflect.Map:
		assert.Equal(t, "object", node["type"], where)
		assert.NotNil(t, node["additionalProperties"], where)
	case typ.Kind() == reflect.Bool:
		assert.Equal(t, "boolean", node["type"], where)
	case typ.Kind() == reflect.Int:
		assert.Equal(t, "integer", node["type"], where)
	case typ.Kind() == reflect.String:
		assert.Equal(t, "string", node["type"], where)
	default:
		t.Errorf("%s: no rule for %s", where, typ)
	}
}

// serveFile is a running `ovsgate serve` and the status file it keeps.
type serveFile struct {
	t      *testing.T
	d      *testutil.Daemon
	path   string
	schema *jsonschema.Schema
	seen   []string // the reasons of every status validated
}

func startServe(t *testing.T, s *ovstest.Sandbox, extra ...string) *serveFile {
	path := filepath.Join(t.TempDir(), "run", "status.json")
	args := append([]string{"serve", "--ovsdb", s.Endpoint(), "--ovs-rundir", s.RunDir(),
		"--status-file", path, "--health-probe-bind-address", "127.0.0.1:0", "--metrics-bind-address", "0"}, extra...)
	return &serveFile{t: t, d: testutil.StartOvsgate(t, binary, nil, args...), path: path, schema: compileSchema(t)}
}

// await waits until the file shows what want accepts, then validates that
// very file against the schema and decodes it strictly into the types.
func (f *serveFile) await(what string, want func(status.Status) bool) status.Status {
	f.t.Helper()
	var got status.Status
	var raw []byte
	ok := testutil.Poll(stateTimeout, func() bool {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return false
		}
		s, err := status.Read(f.path)
		if err != nil || !want(s) {
			return false
		}
		got, raw = s, b
		return true
	})
	if !ok {
		last, err := os.ReadFile(f.path)
		f.t.Fatalf("serve never showed %s; last file (%v):\n%s", what, err, last)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(f.t, err)
	assert.NoError(f.t, f.schema.Validate(doc), "%s: the schema refuses\n%s", what, raw)

	// Every field serve writes has its place in the types, and survives
	// a round trip through them unchanged.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var strict status.Status
	require.NoError(f.t, dec.Decode(&strict), "%s: a field the types lack\n%s", what, raw)
	again, err := json.Marshal(strict)
	require.NoError(f.t, err)
	var a, b any
	require.NoError(f.t, json.Unmarshal(raw, &a))
	require.NoError(f.t, json.Unmarshal(again, &b))
	assert.Equal(f.t, a, b, "%s: the types change the file", what)
	f.seen = append(f.seen, got.Reason)
	return got
}

func reasonHas(sub string) func(status.Status) bool {
	return func(s status.Status) bool { return !s.Ready && strings.Contains(s.Reason, sub) }
}

// TestServeFilesMatchSchema drives a real serve through every state the
// sandbox can show and checks each status file against the schema and the
// types.
func TestServeFilesMatchSchema(t *testing.T) {
	s := ovstest.New(t)
	f := startServe(t, s, "--require-port", "gw0", "--require-flows-restored")

	f.await("OVSDB unreachable", func(st status.Status) bool { return !st.Ready && !st.OVSDB.Connected })
	s.StartOVSDB()
	s.StartVSwitchd()
	f.await("no bridge", reasonHas("br-int"))
	s.AddBridge("br-int")
	st := f.await("no port", reasonHas("gw0"))
	require.Len(t, st.Ports, 1)

	s.Vsctl("add-port", "br-int", "gw0", "--", "set", "interface", "gw0", "type=internal")
	st = f.await("ready", func(st status.Status) bool { return st.Ready })
	require.NotNil(t, st.VSwitchd.Since)
	require.NotNil(t, st.VSwitchd.FlowRestoreWait, "flow-restore-wait is known while OVSDB answers")
	assert.False(t, *st.VSwitchd.FlowRestoreWait)
	assert.NotEmpty(t, st.Bridges[0].Features)
	assert.Positive(t, st.Ports[0].OFPort)

	s.Vsctl("set", "open_vswitch", ".", "other_config:flow-restore-wait=true")
	st = f.await("flow-restore-wait", reasonHas("flow-restore-wait"))
	require.NotNil(t, st.VSwitchd.FlowRestoreWait)
	assert.True(t, *st.VSwitchd.FlowRestoreWait)
	assert.NotNil(t, st.VSwitchd.FlowRestoreWaitSince)
	s.Vsctl("remove", "open_vswitch", ".", "other_config", "flow-restore-wait")
	f.await("ready again", func(st status.Status) bool { return st.Ready })

	s.Vsctl("set", "open_vswitch", ".", "other_config:dpdk-init=true")
	st = f.await("DPDK not initialised", reasonHas("DPDK"))
	require.NotNil(t, st.VSwitchd.DPDK)
	assert.Equal(t, "true", st.VSwitchd.DPDK.Init)
	s.Vsctl("remove", "open_vswitch", ".", "other_config", "dpdk-init")
	f.await("ready after DPDK", func(st status.Status) bool { return st.Ready })

	s.KillVSwitchd()
	st = f.await("ovs-vswitchd gone", func(st status.Status) bool { return !st.Ready && st.VSwitchd.Since == nil })
	assert.Zero(t, st.VSwitchd.PID)
	s.StartVSwitchd()
	f.await("ready after a restart", func(st status.Status) bool { return st.Ready })

	s.StopOVSDB()
	st = f.await("OVSDB gone", func(st status.Status) bool { return !st.Ready && !st.OVSDB.Connected })
	assert.Nil(t, st.VSwitchd.FlowRestoreWait, "unknown while OVSDB is away, not a guessed false")
	s.StartOVSDB()
	f.await("ready after OVSDB", func(st status.Status) bool { return st.Ready })

	require.NoError(t, f.d.Stop())
	st = f.await("stopped", status.Status.Stopped)
	assert.False(t, st.Ready)
	t.Logf("validated %d status files: %q", len(f.seen), f.seen)
}

// TestWatchServeRestarts restarts ovs-vswitchd 20 times under a real serve,
// in both process shapes (in its own pid namespace its pid is 1 every
// time): Watch reports each restart once, after not ready and before ready.
func TestWatchServeRestarts(t *testing.T) {
	ovstest.ForEachMode(t, func(t *testing.T, mode ovstest.Mode) {
		s := ovstest.StartIn(t, mode, "br-int")
		f := startServe(t, s)
		f.await("ready", func(st status.Status) bool { return st.Ready })
		w := startWatch(t, f.path)
		w.expect(status.Ready)
		pids := map[int]bool{}
		const restarts = 20
		for i := range restarts {
			s.RestartVSwitchd()
			w.expect(status.NotReady)
			// The new instance may be reported before it is ready (it has
			// answered, but not yet for its bridges) or with its readiness.
			ev := w.expect(status.Restarted)
			require.NotNil(t, ev.Status.VSwitchd.Since, "restart %d", i+1)
			pids[ev.Status.VSwitchd.PID] = true
			w.expect(status.Ready)
		}
		if mode == ovstest.PidNS {
			assert.Equal(t, map[int]bool{1: true}, pids, "pid 1 on every start")
		}
		require.NoError(t, f.d.Stop())
		w.expect(status.Stopped)
	})
}

// TestWaitServe waits on a file whose directory does not exist yet and
// whose serve starts only later.
func TestWaitServe(t *testing.T) {
	s := ovstest.Start(t, "br-int")
	path := filepath.Join(t.TempDir(), "run", "status.json")
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	result := make(chan error, 1)
	go func() {
		_, err := status.Wait(ctx, path)
		result <- err
	}()
	testutil.StartOvsgate(t, binary, nil, "serve", "--ovsdb", s.Endpoint(), "--ovs-rundir", s.RunDir(),
		"--status-file", path, "--health-probe-bind-address", "127.0.0.1:0", "--metrics-bind-address", "0")
	require.NoError(t, <-result)
}

// BenchmarkWatchLatency measures the time from the rename that replaces
// the file to the event's arrival, over 1,000 replacements that each flip
// readiness.
func BenchmarkWatchLatency(b *testing.B) {
	path := filepath.Join(b.TempDir(), "status.json")
	ready, notReady := sample(true, "", 1), sample(false, "waiting for OVSDB", 0)
	replace(b, path, notReady)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := status.Watch(ctx, path)
	require.NoError(b, err)
	defer func() {
		cancel()
		for range ch {
		}
	}()
	<-ch
	const n = 1000
	var lat []time.Duration
	for b.Loop() {
		lat = lat[:0]
		for i := range n {
			s := ready
			if i%2 == 1 {
				s = notReady
			}
			start := time.Now()
			replace(b, path, s)
			ev := <-ch
			lat = append(lat, time.Since(start))
			if ev.Type != status.Ready && ev.Type != status.NotReady {
				b.Fatalf("event %v", ev.Type)
			}
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[n/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[n*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op")
}
