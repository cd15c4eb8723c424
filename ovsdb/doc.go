// Package ovsdb watches the gated bridges' rows in the Open_vSwitch database
// over one small conditional monitor, and reconnects for ever.
package ovsdb
