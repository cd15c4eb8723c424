package appctl

import (
	"context"
	"errors"
	"strings"
)

// Conditions callers branch on with errors.Is. The kinds of ErrUnreachable
// print only their own words, so that a reason built from them never says
// "ovs-vswitchd" twice.
var (
	// ErrUnreachable: no instance could be reached, or the connection to
	// it was lost. Every error below up to ErrClosed is also ErrUnreachable.
	ErrUnreachable = errors.New("unreachable")
	// ErrNoPidfile: the run directory holds no ovs-vswitchd.pid.
	ErrNoPidfile error = &kindOf{msg: "no pidfile", parent: ErrUnreachable}
	// ErrBadPidfile: the pidfile holds something that is not a pid.
	ErrBadPidfile error = &kindOf{msg: "bad pidfile", parent: ErrUnreachable}
	// ErrNoSocket: the pidfile names a pid whose control socket is missing
	// (ovs-vswitchd is starting, or the pidfile is stale).
	ErrNoSocket error = &kindOf{msg: "no control socket", parent: ErrUnreachable}
	// ErrRefused: the control socket exists but refuses connections: nobody
	// listens (a crash left it behind), or ovs-vswitchd has bound it and not
	// started listening yet.
	ErrRefused error = &kindOf{msg: "control socket refuses connections", parent: ErrUnreachable}
	// ErrPermission: the control socket may not be opened by this user.
	ErrPermission error = &kindOf{msg: "permission denied", parent: ErrUnreachable}
	// ErrClosed: ovs-vswitchd closed a held connection (end of stream or a
	// reset), which it does when it exits.
	ErrClosed error = &kindOf{msg: "connection closed by ovs-vswitchd", parent: ErrUnreachable}

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

// errLocalClose ends a connection closed by this side (Close, or a fault
// that made the client give up on it).
var errLocalClose error = &kindOf{msg: "connection closed", parent: ErrUnreachable}

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

// Is lets errors.Is recognise the answers that mean "not yet". unixctl
// errors are free text: these are the words ovs-vswitchd uses for them.
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
