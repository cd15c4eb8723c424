// Package appctl talks to ovs-vswitchd over its unixctl control socket
// (JSON-RPC 1.0), natively, without the ovs-appctl binary.
package appctl
