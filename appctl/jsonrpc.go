package appctl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// readObject reads one top-level JSON object from r. unixctl messages have no
// framing, so the object's end is found by tracking nesting outside strings.
// It returns io.EOF when the stream ends cleanly before an object starts.
func readObject(r *bufio.Reader, maxSize int) ([]byte, error) {
	var (
		buf      []byte
		depth    int
		inString bool
		escaped  bool
	)
	for {
		ch, err := r.ReadByte()
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				return nil, fmt.Errorf("%w: truncated reply (%d bytes, then end of stream)", ErrMalformed, len(buf))
			}
			return nil, err
		}
		if len(buf) == 0 {
			switch ch {
			case ' ', '\t', '\r', '\n':
				continue
			case '{':
			default:
				return nil, fmt.Errorf("%w: reply starts with %q, not a JSON object", ErrMalformed, ch)
			}
		}
		if len(buf) >= maxSize {
			return nil, fmt.Errorf("%w (over %d bytes)", ErrReplyTooLarge, maxSize)
		}
		buf = append(buf, ch)
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
		case ch == '"':
			inString = true
		case ch == '{' || ch == '[':
			depth++
		case ch == '}' || ch == ']':
			depth--
			if depth == 0 {
				return buf, nil
			}
			if depth < 0 {
				return nil, fmt.Errorf("%w: unbalanced brackets", ErrMalformed)
			}
		}
	}
}

type rawReply struct {
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	ID     json.RawMessage `json:"id"`
	Method *string         `json:"method"`
}

// parseReply decodes one reply frame and checks it answers request id.
func parseReply(frame []byte, id uint64) (string, error) {
	var r rawReply
	if err := json.Unmarshal(frame, &r); err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.Method != nil {
		return "", fmt.Errorf("%w: server sent a request (%q), not a reply", ErrMalformed, *r.Method)
	}
	if got, err := strconv.ParseUint(string(bytes.TrimSpace(r.ID)), 10, 64); err != nil || got != id {
		return "", fmt.Errorf("%w: reply id %s does not match request id %d", ErrMalformed, truncate(r.ID), id)
	}
	if isNull(r.Error) {
		if isNull(r.Result) {
			return "", fmt.Errorf("%w: reply has neither result nor error", ErrMalformed)
		}
		return jsonText(r.Result), nil
	}
	return "", &ServerError{Text: trimText(jsonText(r.Error))}
}

func isNull(m json.RawMessage) bool {
	m = bytes.TrimSpace(m)
	return len(m) == 0 || string(m) == "null"
}

// jsonText returns a JSON string's value, or any other JSON value as text
// (OVS 3.4+ can answer with an object when asked for JSON output).
func jsonText(m json.RawMessage) string {
	var s string
	if err := json.Unmarshal(m, &s); err == nil {
		return s
	}
	return string(m)
}

func trimText(s string) string {
	return string(bytes.TrimSpace([]byte(s)))
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

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
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
