// Package gate decides whether Open vSwitch is ready for a CNI agent: it
// recomputes a Status from OVSDB, the running ovs-vswitchd and its datapath
// features whenever anything changes, and publishes each new Status.
package gate
