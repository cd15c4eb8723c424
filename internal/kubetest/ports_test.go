package kubetest

import (
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	must "github.com/stretchr/testify/require"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

func TestReservePort(t *testing.T) {
	port, release := reservePort(t)
	n, err := strconv.Atoi(port)
	must.NoError(t, err)
	assert.GreaterOrEqual(t, n, portRangeStart)
	assert.Less(t, n, ephemeralStart(t), "below the ephemeral range: no port-0 bind gets it")

	lock := "@ovsgate-kubetest-port-" + port
	_, err = net.Listen("unix", lock)
	assert.Error(t, err, "another cluster cannot take the port")
	release()
	ln, err := net.Listen("unix", lock)
	must.NoError(t, err, "released")
	ln.Close()
}

// etcd listens on no TCP port; a kube-apiserver that finds its port taken
// on a restart tries the same port again until it is free, and the clients
// made before the outage work again.
func TestAPIServerRestartOnATakenPort(t *testing.T) {
	c := Start(t)
	assert.Empty(t, testutil.ListeningPorts(t, c.EtcdPID()), "etcd on unix sockets only")
	assert.Equal(t, []string{c.port}, testutil.ListeningPorts(t, c.APIServerPID()))
	admin := c.AdminClient()
	_, err := admin.Discovery().ServerVersion()
	must.NoError(t, err)

	c.StopAPIServer(t)
	u, err := url.Parse(c.URL())
	must.NoError(t, err)
	thief, err := net.Listen("tcp", u.Host)
	must.NoError(t, err, "the port is free during the outage")
	// The thief lets go once kube-apiserver has failed to bind at least once.
	log, offset := c.path("kube-apiserver.log"), logSize(c.path("kube-apiserver.log"))
	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	defer func() { close(stop); wg.Wait() }()
	go func() {
		defer wg.Done()
		defer thief.Close()
		for !foundPortInUse(log, offset) {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	c.StartAPIServer(t)
	b, err := os.ReadFile(log)
	must.NoError(t, err)
	assert.Contains(t, string(b[offset:]), string(addrInUse), "the restart met the taken port")
	assert.Equal(t, "https://"+u.Host, c.URL(), "the same port")
	_, err = admin.Discovery().ServerVersion()
	assert.NoError(t, err, "a client of before the outage")
}
