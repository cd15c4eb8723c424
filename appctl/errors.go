package appctl

import (
	"errors"
	"strings"
)

// Conditions callers branch on with errors.Is.
var (
	// ErrUnreachable: no pidfile, a stale pid, no socket, or a refused connection.
	ErrUnreachable = errors.New("ovs-vswitchd unreachable")
	// ErrTimeout: the deadline passed before the answer arrived.
	ErrTimeout = errors.New("timed out")
	// ErrMalformed: the answer is not a well-formed JSON-RPC reply to our request.
	ErrMalformed = errors.New("malformed reply")
	// ErrReplyTooLarge: the answer is over the reply size cap. It is also ErrMalformed.
	ErrReplyTooLarge = &wrapped{msg: "reply too large", is: ErrMalformed}
	// ErrNotRegistered: ovs-vswitchd does not know the command yet (it is
	// still starting) or at all.
	ErrNotRegistered = errors.New("command not registered")
	// ErrNoSuchBridge: ovs-vswitchd has no such bridge (yet).
	ErrNoSuchBridge = errors.New("no such bridge")
)

type wrapped struct {
	msg string
	is  error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.is }

// ServerError is an error reply from ovs-vswitchd; Text is its message.
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

// timeoutError is ErrTimeout and, when the context caused it, the context's error.
type timeoutError struct {
	op    string
	cause error
}

func (e *timeoutError) Error() string { return e.op + ": timed out" }

func (e *timeoutError) Is(target error) bool {
	return target == ErrTimeout || (e.cause != nil && errors.Is(e.cause, target))
}
