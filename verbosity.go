package main

import (
	"errors"
	"strconv"

	"github.com/spf13/pflag"
)

// verbosityValue is klog's -v with an error a user can act on: klog's own
// parser answers "high" with strconv's internals.
type verbosityValue struct{ pflag.Value }

var errVerbosity = errors.New("want a log verbosity, a whole number 0 or more")

func (v verbosityValue) Set(s string) error {
	if n, err := strconv.ParseInt(s, 10, 32); err != nil || n < 0 {
		return errVerbosity
	}
	return v.Value.Set(s)
}
