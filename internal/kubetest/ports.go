package kubetest

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// How the daemons get their addresses, with no port chosen by closing a
// listener and hoping that nobody takes it before the daemon binds it:
//
//   - etcd listens on unix sockets in the cluster's directory (etcd names
//     them "localhost:2379" and "localhost:2380", file names in its working
//     directory; no TCP port at all), and kube-apiserver reaches it there.
//   - kube-apiserver needs a TCP port, and the same one again after
//     StopAPIServer (the clients and kubeconfigs of a test hold the URL), and
//     it cannot bind port 0 or take a listener from us. Its port comes from
//     below the kernel's ephemeral range, which the kernel never hands to a
//     port-0 bind or an outgoing connection, so that only a program binding
//     that very number could take it; a machine-wide lock (an abstract unix
//     socket named after the port) keeps every other kubetest cluster off it
//     for the life of this one. Should kube-apiserver still find the port in
//     use (a program outside the tests), a first start picks another port
//     and a restart tries the same one again until readyTimeout.

// etcdSocket is etcd's client URL, relative to the cluster's directory,
// where both daemons run.
const etcdSocket = "unix://localhost:2379"

// etcdPeerSocket is the peer URL a one-member etcd still listens on.
const etcdPeerSocket = "unix://localhost:2380"

// portRangeStart is the lowest port picked for kube-apiserver: well above
// the ports of the daemons a test machine may run (ovsgate's 9476/9477 among
// them), below the ephemeral range.
const portRangeStart = 20000

// bindRetries bounds the ports a first start of kube-apiserver tries.
const bindRetries = 5

// addrInUse is how kube-apiserver's log says that its port is taken.
var addrInUse = []byte("bind: address already in use")

// reservePort picks a port for kube-apiserver and takes its lock; the lock
// holds until release is called.
func reservePort(t testing.TB) (port string, release func()) {
	t.Helper()
	lo, hi := portRangeStart, ephemeralStart(t)
	if hi-lo < 1000 {
		t.Fatalf("kubetest: the ephemeral port range starts at %d, leaving too few ports below it", hi)
	}
	for range 100 {
		n := lo + rand.IntN(hi-lo)
		lock, err := net.Listen("unix", "@ovsgate-kubetest-port-"+strconv.Itoa(n))
		if err != nil {
			continue // another cluster has it
		}
		// Free now, and out of the kernel's reach from now on.
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n)))
		if err != nil {
			lock.Close()
			continue
		}
		ln.Close()
		return strconv.Itoa(n), func() { lock.Close() }
	}
	t.Fatalf("kubetest: no free port from %d to %d after 100 tries", lo, hi)
	return "", nil
}

// ephemeralStart is the first port of the kernel's ephemeral range.
func ephemeralStart(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		t.Fatalf("kubetest: ip_local_port_range %q", b)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("kubetest: ip_local_port_range %q: %v", b, err)
	}
	return n
}

// logSize is the size of a log file now: what a daemon starting now writes
// comes after it.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// foundPortInUse reports whether the log written since offset says that
// the port was taken.
func foundPortInUse(path string, offset int64) bool {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return false
	}
	return bytes.Contains(b[offset:], addrInUse)
}
