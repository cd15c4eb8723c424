// Package errutil holds the one error helper more than one package needs.
package errutil

import "errors"

// Root is the innermost error of err's chain: the part that stays the same
// from one failed attempt to the next (a temp file's name, a connection's
// address and nesting libraries' wrapping do not), for a reason that does
// not change with every retry. Where an error wraps several, the chain ends
// there.
func Root(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
