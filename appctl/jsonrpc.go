package appctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// This file holds the wire format. Replies are split out of the stream by
// hand, so that a reply is bounded before it is buffered, and each is then
// decoded by encoding/json.

const (
	readChunk   = 4 << 10
	keepBufSize = 64 << 10 // a read buffer grown past this for one big reply is dropped after it
)

// frameReader splits a unixctl stream into top-level JSON objects. unixctl
// has no framing: an object ends where its outermost brace closes outside a
// string.
type frameReader struct {
	r   io.Reader
	max int
	buf []byte
	// buf[start:end] is unread input; buf[start:pos] is the part of the
	// current object already scanned.
	start, pos, end int
	depth           int
	inString        bool
	escaped         bool
	err             error // sticky read error
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: r, max: max}
}

// next returns the next object, valid until the following call. It returns
// io.EOF when the stream ends cleanly between objects, an error matching
// ErrMalformed for anything that is not an object or ends inside one, and
// ErrReplyTooLarge once an object outgrows the cap.
func (fr *frameReader) next() ([]byte, error) {
	if fr.start == fr.end && len(fr.buf) > keepBufSize {
		fr.buf, fr.start, fr.pos, fr.end = nil, 0, 0, 0
	}
	for {
		if frame, done, err := fr.scan(); done || err != nil {
			return frame, err
		}
		if fr.err != nil {
			if fr.depth > 0 {
				if errors.Is(fr.err, io.EOF) {
					return nil, fmt.Errorf("%w: truncated reply (%d bytes, then end of stream)", ErrMalformed, fr.pos-fr.start)
				}
				return nil, fmt.Errorf("read after %d bytes of a reply: %w", fr.pos-fr.start, fr.err)
			}
			return nil, fr.err
		}
		fr.fill()
	}
}

// scan looks for the end of the current object in the buffered input.
func (fr *frameReader) scan() (frame []byte, done bool, err error) {
	b := fr.buf[:fr.end]
	for fr.pos < len(b) {
		c := b[fr.pos]
		if fr.depth == 0 {
			switch c {
			case ' ', '\t', '\r', '\n':
				fr.pos++
				fr.start = fr.pos
				continue
			case '{':
				fr.depth = 1
				fr.pos++
				continue
			default:
				return nil, false, fmt.Errorf("%w: reply starts with %q, not a JSON object", ErrMalformed, c)
			}
		}
		if fr.inString {
			if fr.escaped {
				fr.escaped = false
				fr.pos++
				continue
			}
			// Most of a reply is string content: skip it in bulk.
			i := bytes.IndexAny(b[fr.pos:], "\"\\")
			if i < 0 {
				fr.pos = len(b)
				break
			}
			fr.pos += i
			if b[fr.pos] == '"' {
				fr.inString = false
			} else {
				fr.escaped = true
			}
			fr.pos++
			continue
		}
		fr.pos++
		switch c {
		case '"':
			fr.inString = true
		case '{', '[':
			fr.depth++
		case '}', ']':
			fr.depth--
		}
		if fr.depth == 0 {
			if fr.pos-fr.start > fr.max {
				return nil, false, fmt.Errorf("%w: over %d bytes", ErrReplyTooLarge, fr.max)
			}
			frame = b[fr.start:fr.pos]
			fr.start = fr.pos
			return frame, true, nil
		}
	}
	if fr.depth > 0 && fr.pos-fr.start > fr.max {
		return nil, false, fmt.Errorf("%w: over %d bytes", ErrReplyTooLarge, fr.max)
	}
	return nil, false, nil
}

// fill reads more input, first making room: the unread part moves to the
// front, and the buffer grows only while the current object needs it, never
// far beyond the cap.
func (fr *frameReader) fill() {
	if fr.start > 0 {
		n := copy(fr.buf, fr.buf[fr.start:fr.end])
		fr.pos -= fr.start
		fr.end = n
		fr.start = 0
	}
	if fr.end == len(fr.buf) {
		size := max(2*len(fr.buf), readChunk)
		size = min(size, fr.max+readChunk)
		if size <= fr.end { // cannot happen: scan reports the object too large first
			fr.err = fmt.Errorf("%w: over %d bytes", ErrReplyTooLarge, fr.max)
			return
		}
		nb := make([]byte, size)
		copy(nb, fr.buf[:fr.end])
		fr.buf = nb
	}
	n, err := fr.r.Read(fr.buf[fr.end:])
	fr.end += n
	if err != nil {
		fr.err = err
	}
}

// reply is a decoded unixctl reply.
type reply struct {
	id      uint64
	text    string // the result, or the error when isError
	isError bool
}

// decodeReply decodes one JSON-RPC 1.0 reply object. It decodes into a map,
// not a struct, so that member names match exactly rather than ignoring case;
// the last of duplicate members wins. A string result or error is returned unquoted; any
// other non-null value as its JSON text (OVS 3.4+ answers with an object in
// its JSON output mode).
func decodeReply(frame []byte) (reply, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(frame, &m); err != nil {
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return reply{}, fmt.Errorf("%w: not a JSON object", ErrMalformed)
		}
		return reply{}, fmt.Errorf("%w: not valid JSON: %w", ErrMalformed, err)
	}
	if m == nil { // the frame was null
		return reply{}, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	if method := m["method"]; !isNull(method) {
		return reply{}, fmt.Errorf("%w: server sent a request (method %s), not a reply", ErrMalformed, truncate(method))
	}
	// ParseUint takes nothing but digits, so a string, negative, fractional
	// or null id fails here.
	id, err := strconv.ParseUint(string(m["id"]), 10, 64)
	if err != nil {
		return reply{}, fmt.Errorf("%w: reply id %s is not a request id", ErrMalformed, truncate(m["id"]))
	}
	r := reply{id: id}
	v := m["result"]
	if e := m["error"]; !isNull(e) {
		v, r.isError = e, true
	} else if isNull(v) {
		return reply{}, fmt.Errorf("%w: reply has neither result nor error", ErrMalformed)
	}
	if v[0] != '"' {
		r.text = string(v) // a number, boolean, object or array
		return r, nil
	}
	if err := json.Unmarshal(v, &r.text); err != nil { // cannot fail: the frame was valid JSON
		return reply{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if r.isError {
		r.text = strings.TrimSpace(r.text)
	}
	return r, nil
}

// isNull says whether a member is absent or null.
func isNull(v json.RawMessage) bool {
	return v == nil || string(v) == "null"
}

// truncate quotes at most 40 bytes of a value in an error message.
func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	if len(b) == 0 {
		return "(none)"
	}
	return string(b)
}

// appendRequest appends {"id":N,"method":M,"params":[...]}.
func appendRequest(b []byte, method string, args []string, id uint64) []byte {
	if args == nil {
		args = []string{} // params is an array, never null
	}
	req, _ := json.Marshal(struct { // cannot fail for these types
		ID     uint64   `json:"id"`
		Method string   `json:"method"`
		Params []string `json:"params"`
	}{id, method, args})
	return append(b, req...)
}
