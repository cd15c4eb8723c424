package gate

import (
	"fmt"
	"time"

	"github.com/ovsgate/ovsgate/appctl"
	"github.com/ovsgate/ovsgate/ovsdb"
)

// PortCheck is the name of a required port's check.
func PortCheck(name string) string { return "port/" + name }

// openedPorts is what the instance answering now listed in dpif/show: the
// OpenFlow port number of each required port it has opened. Like
// datapath_id, an interface's ofport in OVSDB survives a restart of
// ovs-vswitchd, so only the instance itself can say that it opened the port.
type openedPorts struct {
	serial uint64         // the instance that answered; 0 before any answer
	ofport map[string]int // required ports it listed
	asked  map[string]int // the ofports OVSDB showed when it was asked
	err    string         // why the answer could not be read
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
func (r *reconciler) needsDPIFShow(now time.Time, snap ovsdb.Snapshot) bool {
	want := portsToConfirm(r.cfg.RequirePorts, snap)
	if len(want) == 0 {
		return false
	}
	p := &r.opened
	if p.serial != r.vs.serial {
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
	var err error
	p.ofport, err = appctl.DPIFShow(r.cfg.RequirePorts).Read(a)
	if err != nil {
		p.err = err.Error()
		r.opened = p
		return true
	}
	r.opened = p
	for name, of := range o.ports {
		if p.ofport[name] != of {
			return true
		}
	}
	return false
}

// portView is what computeStatus needs to know about one required port.
type portView struct {
	OVSDB ovsdb.PortInfo
	// Opened is the port number the instance answering now listed for it
	// (0: not listed); Listed tells whether that instance was asked yet.
	Opened int
	Listed bool
	Err    string // why the instance's answer could not be read
}

// portReason says why a required port is not ready, or "" when it is.
func portReason(pv portView, in inputs) string {
	info := pv.OVSDB
	vs := in.vswitchd
	switch {
	case !in.snap.Connected:
		return "waiting for OVSDB"
	case !info.Exists:
		return "does not exist in OVSDB"
	case info.OFPort == -1 || info.Error != "":
		msg := "cannot be opened (ofport " + fmt.Sprint(info.OFPort) + ")"
		if info.Error != "" {
			msg += ": " + info.Error
		}
		return msg
	case info.OFPort == 0:
		return "waiting for an OpenFlow port number"
	case !vs.Answering:
		return "waiting for ovs-vswitchd"
	case pv.Err != "":
		return pv.Err
	case !pv.Listed:
		return "waiting for the ports ovs-vswitchd opened"
	case pv.Opened == 0:
		return fmt.Sprintf("ovs-vswitchd (pid %d) has not opened it (yet)", vs.PID)
	case pv.Opened != info.OFPort:
		return fmt.Sprintf("ovs-vswitchd (pid %d) has it as OpenFlow port %d, OVSDB says %d", vs.PID, pv.Opened, info.OFPort)
	}
	return ""
}
