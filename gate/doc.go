// Package gate decides whether Open vSwitch is ready for a CNI agent: it
// judges OVSDB, the running ovs-vswitchd and its datapath features with one
// ordered table of checks whenever anything changes, and publishes each new
// State (the Status readers see, and what the daemon's own parts read).
package gate
