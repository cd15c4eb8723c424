package appctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the wire format: requests are written without reflection,
// and replies are split out of the stream and decoded by hand, so that a
// round trip costs one allocation for the answer's text and a reply is
// bounded before it is buffered.

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
				if fr.err == io.EOF {
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

// jsonKind is the type of a JSON value found in a reply.
type jsonKind uint8

const (
	kindNone jsonKind = iota // absent
	kindNull
	kindString
	kindOther     // number or boolean: kept as JSON text
	kindComposite // object or array: kept as JSON text
)

type jsonValue struct {
	kind jsonKind
	raw  []byte // the value as it appears in the frame, quotes included
}

// decodeReply decodes one JSON-RPC 1.0 reply object. It accepts exactly
// what encoding/json accepts, with exact member names and the last of
// duplicate members winning. A string result or error is returned unquoted;
// any other non-null value as its JSON text (OVS 3.4+ answers with an object
// in its JSON output mode). scratch is reused to unquote strings.
func decodeReply(frame []byte, scratch *[]byte) (reply, error) {
	var id, result, errv, method jsonValue
	composite := false
	i := skipSpace(frame, 0)
	if i == len(frame) || frame[i] != '{' {
		return reply{}, malformed("not a JSON object")
	}
	i = skipSpace(frame, i+1)
	if i < len(frame) && frame[i] == '}' {
		i++
	} else {
		for {
			if i == len(frame) || frame[i] != '"' {
				return reply{}, malformed("object member without a name")
			}
			end, plain, ok := scanString(frame, i)
			if !ok {
				return reply{}, malformed("bad string")
			}
			key := frame[i+1 : end-1]
			if !plain {
				key = unquote(frame[i:end], (*scratch)[:0])
				*scratch = key
			}
			var slot *jsonValue
			switch string(key) {
			case "id":
				slot = &id
			case "result":
				slot = &result
			case "error":
				slot = &errv
			case "method":
				slot = &method
			}
			i = skipSpace(frame, end)
			if i == len(frame) || frame[i] != ':' {
				return reply{}, malformed("member without a value")
			}
			i = skipSpace(frame, i+1)
			v, end, ok := scanValue(frame, i)
			if !ok {
				return reply{}, malformed("bad value")
			}
			if slot != nil {
				*slot = v
			}
			composite = composite || v.kind == kindComposite
			i = skipSpace(frame, end)
			if i == len(frame) {
				return reply{}, malformed("unterminated object")
			}
			if frame[i] == '}' {
				i++
				break
			}
			if frame[i] != ',' {
				return reply{}, malformed("expected , or }")
			}
			i = skipSpace(frame, i+1)
		}
	}
	if skipSpace(frame, i) != len(frame) {
		return reply{}, malformed("data after the object")
	}
	// encoding/json checks nested values as part of the whole, which also
	// bounds their nesting depth.
	if composite && !json.Valid(frame) {
		return reply{}, malformed("bad nested value")
	}

	if method.kind > kindNull {
		return reply{}, fmt.Errorf("%w: server sent a request (method %s), not a reply", ErrMalformed, truncate(method.raw))
	}
	if !isDigits(id.raw) {
		return reply{}, fmt.Errorf("%w: reply id %s is not a request id", ErrMalformed, truncate(id.raw))
	}
	n, err := strconv.ParseUint(string(id.raw), 10, 64)
	if err != nil {
		return reply{}, fmt.Errorf("%w: reply id %s is not a request id", ErrMalformed, truncate(id.raw))
	}
	r := reply{id: n}
	v := result
	if errv.kind > kindNull {
		v, r.isError = errv, true
	} else if result.kind <= kindNull {
		return reply{}, fmt.Errorf("%w: reply has neither result nor error", ErrMalformed)
	}
	if v.kind == kindString {
		b := unquote(v.raw, (*scratch)[:0])
		*scratch = b
		if r.isError {
			b = bytes.TrimSpace(b)
		}
		r.text = string(b)
	} else {
		r.text = string(v.raw) // a number, boolean, object or array
	}
	return r, nil
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// scanValue finds the end of the JSON value at b[i:] and checks it.
func scanValue(b []byte, i int) (jsonValue, int, bool) {
	if i == len(b) {
		return jsonValue{}, i, false
	}
	switch c := b[i]; {
	case c == '"':
		end, _, ok := scanString(b, i)
		return jsonValue{kind: kindString, raw: b[i:end]}, end, ok
	case c == 'n':
		ok := bytes.HasPrefix(b[i:], []byte("null"))
		return jsonValue{kind: kindNull, raw: b[i : i+4*btoi(ok)]}, i + 4, ok
	case c == 't':
		ok := bytes.HasPrefix(b[i:], []byte("true"))
		return jsonValue{kind: kindOther, raw: b[i : i+4*btoi(ok)]}, i + 4, ok
	case c == 'f':
		ok := bytes.HasPrefix(b[i:], []byte("false"))
		return jsonValue{kind: kindOther, raw: b[i : i+5*btoi(ok)]}, i + 5, ok
	case c == '-' || (c >= '0' && c <= '9'):
		end, ok := scanNumber(b, i)
		return jsonValue{kind: kindOther, raw: b[i:end]}, end, ok
	case c == '{' || c == '[':
		// Nested values are rare in replies: only their end is found here,
		// and the caller has encoding/json check them.
		end, ok := scanComposite(b, i)
		return jsonValue{kind: kindComposite, raw: b[i:end]}, end, ok
	}
	return jsonValue{}, i, false
}

func btoi(ok bool) int {
	if ok {
		return 1
	}
	return 0
}

// scanString checks the string starting at b[i] (a quote) and returns the
// index after its closing quote, and whether its content needs no unquoting
// (no escapes, valid UTF-8).
func scanString(b []byte, i int) (end int, plain, ok bool) {
	plain = true
	for i++; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, plain, true
		case c < 0x20:
			return i, false, false
		case c == '\\':
			plain = false
			if i+1 == len(b) {
				return i, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					return i, false, false
				}
				i += 6
			default:
				return i, false, false
			}
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				plain = false
			}
			i += size
		}
	}
	return i, false, false
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unquote appends the content of the checked string s (quotes included) to
// dst, resolving escapes the way encoding/json does: invalid UTF-8 and lone
// surrogates become U+FFFD.
func unquote(s []byte, dst []byte) []byte {
	s = s[1 : len(s)-1]
	for i := 0; i < len(s); {
		c := s[i]
		if c == '\\' {
			switch e := s[i+1]; e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(s[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
						r2 = hex4(s[i+2:])
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // " \ /
				dst = append(dst, e)
			}
			i += 2
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		dst = utf8.AppendRune(dst, r)
		i += size
	}
	return dst
}

// scanNumber checks the JSON number at b[i:] and returns its end.
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i == len(b):
		return i, false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// scanComposite finds the end of the object or array at b[i:] by nesting
// alone; the caller checks the content.
func scanComposite(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			end, _, ok := scanString(b, i)
			if !ok {
				return end, false
			}
			i = end
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
		i++
	}
	return i, false
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	if len(b) == 0 {
		return "(none)"
	}
	return string(b)
}

// appendRequest writes {"id":N,"method":M,"params":[...]}.
func appendRequest(b []byte, method string, args []string, id uint64) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, method)
	b = append(b, `,"params":[`...)
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, a)
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
