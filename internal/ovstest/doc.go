// Package ovstest runs a real, throwaway Open vSwitch (ovsdb-server and
// ovs-vswitchd with the dummy datapath) for one test, with all of its state in
// one short-pathed folder that the test's cleanup removes.
package ovstest
