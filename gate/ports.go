package gate

import (
	"time"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/ovsdb"
)

// openedPorts is what the instance answering now listed in dpif/show: the
// OpenFlow port number of each required port it has opened. Like
// datapath_id, an interface's ofport in OVSDB survives a restart of
// ovs-vswitchd, so only the instance itself can say that it opened the port.
type openedPorts struct {
	serial uint64         // the instance that answered; 0 before any answer
	ofport map[string]int // required ports it listed
	asked  map[string]int // the ofports OVSDB showed when it was asked
	err    error          // why the answer could not be read
}

// portsToConfirm returns the ofports OVSDB shows for the required ports that
// could be confirmed (present, a port number, no error): what a dpif/show
// would be asked about.
func portsToConfirm(names []string, snap ovsdb.Snapshot) map[string]int {
	m := make(map[string]int, len(names))
	for _, name := range names {
		if info := snap.Ports[name]; info.Exists && info.OFPort > 0 && info.Error == "" {
			m[name] = info.OFPort
		}
	}
	return m
}

// needsDPIFShow reports whether the instance answering now must be asked
// which ports it opened: never asked, OVSDB changed a port number since, or a
// port it had not opened yet is due for another look.
func (r *reconciler) needsDPIFShow(now time.Time, want map[string]int) bool {
	if len(want) == 0 {
		return false
	}
	p := &r.opened
	if p.serial != r.vs.cur.serial {
		return true
	}
	retry := false
	for name, of := range want {
		switch {
		case p.ofport[name] == of:
		case p.asked[name] != of:
			return true
		default:
			retry = true
		}
	}
	return retry && !now.Before(r.nextRetry)
}

// dpifShow records the answer to dpif/show; it reports whether a required
// port is still not opened, so that the question is asked again later.
func (r *reconciler) dpifShow(o *op, a appctl.Result) (notYet bool) {
	p := openedPorts{serial: o.serial, asked: o.ports}
	p.ofport, p.err = appctl.DPIFShow(r.cfg.RequirePorts).Read(a)
	r.opened = p
	if p.err != nil {
		return true
	}
	for name, of := range o.ports {
		if p.ofport[name] != of {
			return true
		}
	}
	return false
}
