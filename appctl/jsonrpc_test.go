package appctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// frames splits data with a frameReader reading through wrap, until the
// first error.
func frames(data []byte, max int, wrap func(io.Reader) io.Reader) ([]string, error) {
	fr := newFrameReader(wrap(bytes.NewReader(data)), max)
	var out []string
	for {
		f, err := fr.next()
		if err != nil {
			return out, err
		}
		out = append(out, string(f))
	}
}

var readers = map[string]func(io.Reader) io.Reader{
	"whole":    func(r io.Reader) io.Reader { return r },
	"one byte": iotest.OneByteReader,
	"halves":   iotest.HalfReader,
}

func TestFrameReader(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		max    int
		want   []string
		err    error // nil: io.EOF after the frames
	}{
		{
			name:   "back to back, braces and escapes in strings",
			stream: `{"id":1,"result":"a { b","error":null}{"id":2,"result":"q\"}\\","error":null}`,
			want:   []string{`{"id":1,"result":"a { b","error":null}`, `{"id":2,"result":"q\"}\\","error":null}`},
		},
		{
			name:   "whitespace and newlines between",
			stream: " \n{\"a\":[1,{\"b\":\"]\"}]}\r\n\t{}\n",
			want:   []string{`{"a":[1,{"b":"]"}]}`, `{}`},
		},
		{name: "empty stream", stream: ""},
		{name: "only whitespace", stream: " \n "},
		{name: "truncated", stream: `{"id":1}{"id":2,"result":"Recirc: Y`, want: []string{`{"id":1}`}, err: ErrMalformed},
		{name: "truncated in an escape", stream: `{"a":"\`, err: ErrMalformed},
		{name: "not an object", stream: `{"id":1}[1]`, want: []string{`{"id":1}`}, err: ErrMalformed},
		{name: "garbage", stream: "HTTP/1.1 200 OK\r\n", err: ErrMalformed},
		{name: "exactly the cap", stream: `{"a":"` + strings.Repeat("x", 10) + `"}`, max: 18, want: []string{`{"a":"xxxxxxxxxx"}`}},
		{name: "one over the cap", stream: `{"a":"` + strings.Repeat("x", 11) + `"}`, max: 18, err: ErrReplyTooLarge},
		{name: "over the cap, never closed", stream: `{"a":"` + strings.Repeat("x", 100), max: 18, err: ErrReplyTooLarge},
		{name: "big frame, small cap, bigger than a read", stream: `{"a":"` + strings.Repeat("x", 3*readChunk) + `"}`, max: readChunk + 1, err: ErrReplyTooLarge},
		{name: "big frame", stream: `{"a":"` + strings.Repeat("x", 3*readChunk) + `"}{}`, want: []string{`{"a":"` + strings.Repeat("x", 3*readChunk) + `"}`, "{}"}},
	}
	for _, tt := range tests {
		for rname, wrap := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				max := tt.max
				if max == 0 {
					max = 1 << 20
				}
				got, err := frames([]byte(tt.stream), max, wrap)
				assert.Equal(t, tt.want, got)
				if tt.err == nil {
					assert.Equal(t, io.EOF, err)
				} else {
					assert.ErrorIs(t, err, tt.err)
				}
			})
		}
	}
}

func TestFrameReaderDropsBigBuffer(t *testing.T) {
	big := `{"a":"` + strings.Repeat("x", 4*keepBufSize) + `"}`
	fr := newFrameReader(strings.NewReader(big+`{"b":1}`), maxReplySize)
	f, err := fr.next()
	require.NoError(t, err)
	assert.Len(t, f, len(big))
	f, err = fr.next()
	require.NoError(t, err)
	assert.Equal(t, `{"b":1}`, string(f))
	_, err = fr.next()
	assert.Equal(t, io.EOF, err)
	assert.LessOrEqual(t, cap(fr.buf), keepBufSize, "the buffer of one big reply is not kept")
}

func TestDecodeReply(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  reply
		err   string // substring of the ErrMalformed error; "" for success
	}{
		{"result", `{"id":1,"result":"Recirc: Yes\n","error":null}`, reply{id: 1, text: "Recirc: Yes\n"}, ""},
		{"any member order, spaces", ` { "error" : null , "result" : "x" , "id" : 42 } `, reply{id: 42, text: "x"}, ""},
		{"no error member", `{"id":1,"result":"x"}`, reply{id: 1, text: "x"}, ""},
		{"error trimmed", `{"id":2,"result":null,"error":"no such bridge\n"}`, reply{id: 2, text: "no such bridge", isError: true}, ""},
		{"error wins over result", `{"id":2,"result":"x","error":"bad"}`, reply{id: 2, text: "bad", isError: true}, ""},
		{"non-string error", `{"id":2,"result":null,"error":{"code":1}}`, reply{id: 2, text: `{"code":1}`, isError: true}, ""},
		{"object result", `{"id":3,"result":{"reply":"a\nb","reply-format":"plain"},"error":null}`, reply{id: 3, text: `{"reply":"a\nb","reply-format":"plain"}`}, ""},
		{"number result", `{"id":3,"result":-1.5e3,"error":null}`, reply{id: 3, text: `-1.5e3`}, ""},
		{"bool result", `{"id":3,"result":false}`, reply{id: 3, text: `false`}, ""},
		{"escapes", `{"id":1,"result":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}`, reply{id: 1, text: "\"\\/\b\f\n\r\té😀"}, ""},
		{"lone surrogates", `{"id":1,"result":"\ud83d-\ude00\ud83d\u0041"}`, reply{id: 1, text: "\uFFFD-\uFFFD\uFFFDA"}, ""},
		{"invalid UTF-8", "{\"id\":1,\"result\":\"a\xffb\"}", reply{id: 1, text: "a\uFFFDb"}, ""},
		{"escaped member name", `{"\u0069d":1,"result":"x"}`, reply{id: 1, text: "x"}, ""},
		{"last duplicate wins", `{"id":1,"id":2,"result":"x","result":"y"}`, reply{id: 2, text: "y"}, ""},
		{"unknown members ignored", `{"x":[1,{"y":null}],"id":1,"result":"x","z":true}`, reply{id: 1, text: "x"}, ""},
		{"null method", `{"id":1,"result":"x","method":null}`, reply{id: 1, text: "x"}, ""},
		{"max id", `{"id":18446744073709551615,"result":"x"}`, reply{id: 1<<64 - 1, text: "x"}, ""},

		{"empty object", `{}`, reply{}, "is not a request id"},
		{"string id", `{"id":"1","result":"x"}`, reply{}, "is not a request id"},
		{"negative id", `{"id":-1,"result":"x"}`, reply{}, "is not a request id"},
		{"fraction id", `{"id":1.0,"result":"x"}`, reply{}, "is not a request id"},
		{"id overflow", `{"id":18446744073709551616,"result":"x"}`, reply{}, "is not a request id"},
		{"neither", `{"id":1,"result":null,"error":null}`, reply{}, "neither result nor error"},
		{"request", `{"id":1,"method":"echo","params":[]}`, reply{}, "server sent a request"},
		{"not an object", `[1]`, reply{}, "not a JSON object"},
		{"null", `null`, reply{}, "not a JSON object"},
		{"names match exactly", `{"ID":1,"result":"x"}`, reply{}, "is not a request id"},
		{"null id", `{"id":null,"result":"x"}`, reply{}, "is not a request id"},
		{"long id cut short", `{"id":"` + strings.Repeat("9", 100) + `","result":"x"}`, reply{}, `reply id "` + strings.Repeat("9", 39) + `... is not`},
		{"trailing comma", `{"id":1,"result":"x",}`, reply{}, "not valid JSON"},
		{"missing colon", `{"id" 1}`, reply{}, "not valid JSON"},
		{"bad literal", `{"id":1,"result":nul}`, reply{}, "not valid JSON"},
		{"leading zero", `{"id":01,"result":"x"}`, reply{}, "not valid JSON"},
		{"bad escape", `{"id":1,"result":"\x"}`, reply{}, "not valid JSON"},
		{"short unicode escape", `{"id":1,"result":"\u12"}`, reply{}, "not valid JSON"},
		{"control character", "{\"id\":1,\"result\":\"a\nb\"}", reply{}, "not valid JSON"},
		{"bad nested value", `{"id":1,"result":"x","extra":[1,]}`, reply{}, "not valid JSON"},
		{"unterminated", `{"id":1`, reply{}, "not valid JSON"},
		{"data after", `{"id":1,"result":"x"} x`, reply{}, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeReply([]byte(tt.frame))
			ref, refErr := refDecode([]byte(tt.frame))
			if tt.err != "" {
				assert.ErrorIs(t, err, ErrMalformed)
				assert.ErrorContains(t, err, tt.err)
				assert.Error(t, refErr, "encoding/json disagrees")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			require.NoError(t, refErr)
			assert.Equal(t, ref, got, "encoding/json disagrees")
		})
	}
}

func TestAppendRequest(t *testing.T) {
	b := appendRequest(nil, "dpif/show-dp-features", []string{"br-int"}, 7)
	assert.Equal(t, `{"id":7,"method":"dpif/show-dp-features","params":["br-int"]}`, string(b))
	b = appendRequest(b[:0], "version", nil, 1)
	assert.Equal(t, `{"id":1,"method":"version","params":[]}`, string(b))

	// Whatever the arguments, the request is JSON that encoding/json reads back.
	args := []string{"quote\"back\\slash", "\x00\x1f\x7f", "ünï€😀", "bad\xffutf8", ""}
	b = appendRequest(nil, "m\"\n", args, 1<<64-1)
	var req struct {
		ID     uint64   `json:"id"`
		Method string   `json:"method"`
		Params []string `json:"params"`
	}
	require.NoError(t, json.Unmarshal(b, &req), string(b))
	assert.Equal(t, uint64(1<<64-1), req.ID)
	assert.Equal(t, "m\"\n", req.Method)
	args[3] = "bad\uFFFDutf8"
	assert.Equal(t, args, req.Params)
}

// refDecode is decodeReply written with encoding/json, as the reference the
// fuzz target compares with.
func refDecode(frame []byte) (reply, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(frame, &m); err != nil {
		return reply{}, err
	}
	isNull := func(v json.RawMessage) bool { return v == nil || string(v) == "null" }
	if !isNull(m["method"]) {
		return reply{}, errors.New("request")
	}
	idText := string(m["id"])
	if idText == "" || strings.Trim(idText, "0123456789") != "" {
		return reply{}, errors.New("bad id")
	}
	id, err := strconv.ParseUint(idText, 10, 64)
	if err != nil {
		return reply{}, err
	}
	r := reply{id: id}
	v := m["result"]
	if !isNull(m["error"]) {
		v, r.isError = m["error"], true
	} else if isNull(v) {
		return reply{}, errors.New("neither")
	}
	if v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return reply{}, err
		}
		if r.isError {
			s = strings.TrimSpace(s)
		}
		r.text = s
	} else {
		r.text = string(v)
	}
	return r, nil
}

// refFrames splits data with json.Decoder when data is nothing but JSON
// objects and whitespace.
func refFrames(data []byte) ([]string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var out []string
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return out, true
		}
		if err != nil || raw[0] != '{' {
			return nil, false
		}
		out = append(out, string(raw))
	}
}

func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte(`{"id":1,"result":"Recirc: Yes\nMax MPLS depth: 3\n","error":null}`))
	f.Add([]byte(`{"id":1,"result":null,"error":"no such bridge"}{"id":2,"result":"x","error":null}`))
	f.Add([]byte(`{"id":1,"result":null,"error":"\"dpif/show-dp-features\" is not a valid command (use \"list-commands\" to see a list of valid commands)"}`))
	f.Add([]byte(`{"id":1,"result":{"reply":"Recirc: Yes\n","reply-format":"plain"},"error":null}`))
	f.Add([]byte(`{"id":1,"result":"a{[\"\\\u00e9\ud83d\ude00\ud800","error":null} {"\u0069d":1,"id":2,"result":1e5}`))
	f.Add([]byte(`{"id":1,"result":"trunc`))
	f.Add([]byte(`{"id":1,"method":"x","params":[]}`))
	f.Add([]byte("{\"id\":1,\"result\":\"\xff\"}\n"))
	f.Add([]byte(`]]]`))
	const max = 512
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, err := frames(data, max, readers["whole"])
		for _, frame := range whole {
			if len(frame) > max || frame[0] != '{' {
				t.Fatalf("bad frame %q", frame)
			}
			got, err := decodeReply([]byte(frame))
			ref, refErr := refDecode([]byte(frame))
			switch {
			case err != nil && !errors.Is(err, ErrMalformed):
				t.Fatalf("error not ErrMalformed: %v", err)
			case (err == nil) != (refErr == nil):
				t.Fatalf("decodeReply(%q) = %v, encoding/json: %v", frame, err, refErr)
			case err == nil && got != ref:
				t.Fatalf("decodeReply(%q) = %d %v %q, encoding/json: %d %v %q", frame, got.id, got.isError, got.text, ref.id, ref.isError, ref.text)
			}
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("split error not ErrMalformed: %v", err)
		}

		// Where the input arrives makes no difference.
		bytewise, err2 := frames(data, max, readers["one byte"])
		if !slices.Equal(whole, bytewise) || errors.Is(err, io.EOF) != errors.Is(err2, io.EOF) || errors.Is(err, ErrReplyTooLarge) != errors.Is(err2, ErrReplyTooLarge) {
			t.Fatalf("read whole: %q, %v; byte by byte: %q, %v", whole, err, bytewise, err2)
		}

		// A stream of valid objects is split exactly as json.Decoder does.
		if ref, ok := refFrames(data); ok {
			all, err := frames(data, len(data)+1, readers["whole"])
			if !errors.Is(err, io.EOF) || !slices.Equal(all, ref) {
				t.Fatalf("frames %q, %v; json.Decoder: %q", all, err, ref)
			}
		}
	})
}

func BenchmarkDecodeReply(b *testing.B) {
	data, err := os.ReadFile(fixtureFiles(b, "ovs-3.1.0.txt")[0])
	require.NoError(b, err)
	frame, err := json.Marshal(map[string]any{"id": 7, "result": string(data), "error": nil})
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeReply(frame); err != nil {
			b.Fatal(err)
		}
	}
}
