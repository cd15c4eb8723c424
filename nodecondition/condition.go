package nodecondition

import (
	"encoding/json"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ovsgate/ovsgate/gate"
)

const (
	// MaxMessageBytes bounds a condition's message. The Node object is read
	// by every controller that watches nodes and the message is rewritten
	// with every heartbeat; the full reason stays in the status file.
	MaxMessageBytes = 256

	// ReasonNotReady stands in for a cause that is empty or not one
	// CamelCase word.
	ReasonNotReady = "NotReady"

	// MessageReady is the message of a True condition.
	MessageReady = "OVS is ready"
	// messageNotReady stands in for an empty reason.
	messageNotReady = "OVS is not ready"

	// maxReasonBytes is far above any cause word; a longer one is a bug.
	maxReasonBytes = 128
	ellipsis       = "..."

	// The condition statuses the writer writes, as Kubernetes spells them.
	statusTrue  = "True"
	statusFalse = "False"
)

// reasonPattern is one CamelCase word. Causes are open-ended (the gate adds
// new ones), so a reason is checked for its form, not against a list.
var reasonPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)

// desired is what the condition should say; the times are set when written.
type desired struct {
	status  string
	reason  string
	message string
}

// desiredFor maps a gate state to the condition's status, reason and message.
func desiredFor(s gate.State) desired {
	if s.Ready {
		// A True condition always reads OVSReady, whatever the cause says.
		return desired{status: statusTrue, reason: gate.CauseReady, message: MessageReady}
	}
	reason := s.Cause
	if reason == gate.CauseReady || len(reason) > maxReasonBytes || !reasonPattern.MatchString(reason) {
		reason = ReasonNotReady
	}
	msg := s.Reason
	if strings.TrimSpace(msg) == "" {
		msg = messageNotReady
	}
	return desired{status: statusFalse, reason: reason, message: boundMessage(msg, MaxMessageBytes)}
}

// boundMessage makes s valid UTF-8 and at most n bytes, cutting it on a rune
// boundary and ending it with "..." when it is longer.
func boundMessage(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// nodeState is what the writer knows of its condition on the Node.
type nodeState struct {
	// known is false until the Node has been read, and again after the Node
	// was found missing: a re-created Node starts without the condition.
	known bool
	// present: the Node has the condition; the fields below are its values.
	present    bool
	desired    desired
	transition time.Time
}

// nodeCondition is a Node condition as the API server sends and takes it:
// only the fields the writer reads and writes, so that it needs none of
// Kubernetes' API types.
type nodeCondition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
	LastHeartbeatTime  time.Time `json:"lastHeartbeatTime,omitzero"`
	LastTransitionTime time.Time `json:"lastTransitionTime,omitzero"`
}

// apiTime is t as the API server keeps it: whole seconds, UTC.
func apiTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Second)
}

// stateOf reads the condition of type typ from a Node's conditions.
func stateOf(conds []nodeCondition, typ string) nodeState {
	for _, c := range conds {
		if c.Type == typ {
			return nodeState{
				known:      true,
				present:    true,
				desired:    desired{status: c.Status, reason: c.Reason, message: c.Message},
				transition: c.LastTransitionTime,
			}
		}
	}
	return nodeState{known: true}
}

// differs reports whether writing d would change the condition on the Node
// (heartbeat aside).
func (st nodeState) differs(d desired) bool {
	return !st.known || !st.present || st.desired != d
}

// condition is the condition to write at now: lastTransitionTime moves only
// when the status does.
func (st nodeState) condition(typ string, d desired, now time.Time) nodeCondition {
	transition := now
	if st.present && st.desired.status == d.status && !st.transition.IsZero() {
		transition = st.transition
	}
	return nodeCondition{
		Type:               typ,
		Status:             d.status,
		Reason:             d.reason,
		Message:            d.message,
		LastHeartbeatTime:  now,
		LastTransitionTime: transition,
	}
}

// patchBody is a strategic-merge patch of the status subresource that
// touches only c: Node conditions merge on their type. Its times are written
// as the API server keeps them, RFC 3339 in whole seconds and UTC.
func patchBody(c nodeCondition) ([]byte, error) {
	c.LastHeartbeatTime, c.LastTransitionTime = apiTime(c.LastHeartbeatTime), apiTime(c.LastTransitionTime)
	type status struct {
		Conditions []nodeCondition `json:"conditions"`
	}
	return json.Marshal(struct {
		Status status `json:"status"`
	}{status{[]nodeCondition{c}}})
}
