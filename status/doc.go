// Package status reads the status file that `ovsgate serve` (and `ovsgate
// wait --status-file`) keeps, for the CNI agents and other programs that
// must not act before Open vSwitch can carry traffic.
//
// The file is replaced by rename, never rewritten in place, so one read of it
// is always one whole status. Read returns it once; Wait blocks until it says
// ready; Watch reports each change that matters to an agent: ready, not ready
// (with the reason), ovs-vswitchd restarted (a new vswitchd.since: replay the
// flows), ovsgate stopped, the file missing, and an unreadable file.
//
// The package imports only the standard library and fsnotify, so an agent
// that uses it links no OVSDB, Kubernetes or Prometheus client.
//
// # Compatibility
//
// The file's format only grows: a later ovsgate may add fields (and the types
// here gain them), and may add check names, causes and reasons; it does not
// rename or remove a field, change a field's JSON type or meaning, or turn a
// field that is always present into one that may be absent, without a new
// major version of the module. A field documented as absent while unknown
// (vswitchd.flowRestoreWait, vswitchd.dpdk) is a pointer here, so "unknown"
// is never mistaken for false. Readers should ignore fields they do not know,
// as encoding/json does. The JSON Schema of the file (draft 2020-12) is
// schema.json beside this package, also available as [Schema].
package status
