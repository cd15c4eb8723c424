// Command floor is the smallest Go HTTP probe there is: a default
// net/http server whose handler writes "ok", and nothing else linked in.
// The bench builds it as ovsgate is built and measures its memory beside
// serve's, as the floor under any Go HTTP daemon's RSS.
//
// usage: floor ADDR
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: floor ADDR")
		os.Exit(2)
	}
	err := http.ListenAndServe(os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	fmt.Fprintln(os.Stderr, "floor:", err)
	os.Exit(1)
}
