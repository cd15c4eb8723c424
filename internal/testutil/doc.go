// Package testutil holds small helpers that tests in several packages share.
package testutil
