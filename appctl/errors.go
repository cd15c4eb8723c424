package appctl

import (
	"context"
	"errors"
	"strings"
)

// Conditions callers branch on with errors.Is.
var (
	// ErrUnreachable: no pidfile, a stale pid, no socket, a refused
	// connection, or a connection the server closed.
	ErrUnreachable = errors.New("ovs-vswitchd unreachable")
	// ErrTimeout: the deadline passed before the answer arrived.
	ErrTimeout = errors.New("timed out")
	// ErrMalformed: the answer is not a well-formed JSON-RPC reply to our
	// request, or not the text expected.
	ErrMalformed = errors.New("malformed reply")
	// ErrReplyTooLarge: the answer is over the reply size cap. It is also
	// ErrMalformed.
	ErrReplyTooLarge error = &kindOf{msg: "reply too large", parent: ErrMalformed}
	// ErrNotRegistered: ovs-vswitchd does not know the command, yet (it is
	// still starting) or at all.
	ErrNotRegistered = errors.New("command not registered")
	// ErrNoSuchBridge: ovs-vswitchd has no such bridge, yet or at all.
	ErrNoSuchBridge = errors.New("no such bridge")
)

// kindOf is a sentinel that is also its parent.
type kindOf struct {
	msg    string
	parent error
}

func (k *kindOf) Error() string { return k.msg }
func (k *kindOf) Unwrap() error { return k.parent }

// ServerError is an error reply from ovs-vswitchd; Text is its message,
// trimmed.
type ServerError struct {
	Method string
	Text   string
}

func (e *ServerError) Error() string {
	return e.Method + ": " + e.Text
}

// Is lets errors.Is recognise the answers that mean "not yet".
func (e *ServerError) Is(target error) bool {
	switch target {
	case ErrNotRegistered:
		return strings.Contains(e.Text, "is not a valid command")
	case ErrNoSuchBridge:
		return strings.Contains(e.Text, "no such bridge")
	}
	return false
}

// ctxError ends a dial or call cut short by its context: it is ErrTimeout
// when a deadline passed, and the context's error.
type ctxError struct {
	op    string
	cause error
}

func (e *ctxError) Error() string {
	if e.timeout() {
		return e.op + ": timed out"
	}
	return e.op + ": " + e.cause.Error()
}

func (e *ctxError) timeout() bool {
	return e.cause == nil || errors.Is(e.cause, context.DeadlineExceeded)
}

func (e *ctxError) Is(target error) bool { return target == ErrTimeout && e.timeout() }
func (e *ctxError) Unwrap() error        { return e.cause }
