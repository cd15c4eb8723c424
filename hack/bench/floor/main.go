// Command floor is the smallest Go HTTP probe there is: a default
// net/http server whose handler writes "ok", and nothing else linked in.
// The bench builds it as ovsgate is built and measures its memory beside
// serve's, as the floor under any Go HTTP daemon's RSS.
//
// usage: floor ADDR
//
// ADDR may have port 0: floor prints "listening on HOST:PORT" on stderr
// once it listens, so a caller never picks a port and hopes.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: floor ADDR")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err == nil {
		fmt.Fprintln(os.Stderr, "listening on", ln.Addr())
		err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "ok")
		}))
	}
	fmt.Fprintln(os.Stderr, "floor:", err)
	os.Exit(1)
}
