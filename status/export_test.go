package status

// SetReadHook makes every read of the file by a watch call f afterwards, so
// that a test can pace its writes by the watcher's reads. Not for use while
// a watch runs.
func SetReadHook(f func()) (restore func()) {
	old := readHook
	readHook = f
	return func() { readHook = old }
}
