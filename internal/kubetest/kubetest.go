package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/ovsgate/ovsgate/internal/testutil"
)

// The static users every cluster knows, each with its own bearer token.
const (
	// AdminUser is in system:masters: it may do anything.
	AdminUser = "admin"
	// OVSGateUser has no groups beyond system:authenticated and no bindings
	// until a test grants it a role.
	OVSGateUser = "ovsgate"
	// NobodyUser is authenticated and never bound to anything.
	NobodyUser = "nobody"
)

const (
	// readyTimeout bounds a start: a cold start to /readyz takes about 3.5 s
	// on 2 cores, slower under -race and a loaded CI machine.
	readyTimeout = 90 * time.Second
	// stopTimeout is how long a daemon gets between SIGTERM and SIGKILL.
	stopTimeout = 15 * time.Second
	// logTail is how much of each daemon's log a failed test prints.
	logTail = 8 << 10
)

// Cluster is one test's etcd and kube-apiserver.
type Cluster struct {
	t       testing.TB
	dir     string
	bin     string
	etcdURL string
	port    string // kube-apiserver's; see ports.go
	tokens  map[string]string
	// releasePort gives up the lock on port; started says kube-apiserver
	// has been ready once (a restart keeps the port).
	releasePort func()
	started     bool

	mu          sync.Mutex
	etcd        *proc
	apiserver   *proc
	caData      []byte
	httpClients []*http.Client
}

// proc is a daemon this package spawned and therefore may stop.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited is closed
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Start runs etcd and kube-apiserver for t and returns once /readyz answers
// 200. t's cleanup stops both, kube-apiserver first. Without the binaries it
// skips t, or fails it when the CI environment variable is set.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := require(t)
	// The directory first: its removal is then a cleanup that runs after
	// ours. A short one, for etcd's unix sockets there (sun_path).
	dir := testutil.ShortTempDir(t, "kubetest")
	c := &Cluster{
		t:       t,
		dir:     dir,
		bin:     bin,
		etcdURL: etcdSocket,
		tokens:  map[string]string{},
	}
	t.Cleanup(c.cleanup)

	c.writeAuthFiles(t)
	c.startEtcd(t)
	c.StartAPIServer(t)
	return c
}

// URL is kube-apiserver's https URL.
func (c *Cluster) URL() string { return "https://127.0.0.1:" + c.port }

// EtcdPID is the pid of the running etcd, or 0.
func (c *Cluster) EtcdPID() int { return c.pid(&c.etcd) }

// APIServerPID is the pid of the running kube-apiserver, or 0.
func (c *Cluster) APIServerPID() int { return c.pid(&c.apiserver) }

func (c *Cluster) pid(p **proc) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *p == nil || !(*p).running() {
		return 0
	}
	return (*p).cmd.Process.Pid
}

// RESTConfig is a client configuration for one of the static users.
func (c *Cluster) RESTConfig(t testing.TB, user string) *rest.Config {
	t.Helper()
	token, ok := c.tokens[user]
	if !ok {
		t.Fatalf("kubetest: unknown user %q", user)
	}
	c.mu.Lock()
	ca := c.caData
	c.mu.Unlock()
	return &rest.Config{
		Host:            c.URL(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		// The default 5 QPS would make tests wait on the client, not the server.
		QPS:     1000,
		Burst:   1000,
		Timeout: 30 * time.Second,
	}
}

// Client is a clientset acting as user.
func (c *Cluster) Client(t testing.TB, user string) kubernetes.Interface {
	t.Helper()
	cfg := c.RESTConfig(t, user)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatalf("kubetest: http client for %s: %v", user, err)
	}
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		t.Fatalf("kubetest: clientset for %s: %v", user, err)
	}
	c.mu.Lock()
	c.httpClients = append(c.httpClients, hc)
	c.mu.Unlock()
	return cs
}

// AdminClient is a clientset acting as AdminUser (system:masters).
func (c *Cluster) AdminClient() kubernetes.Interface {
	c.t.Helper()
	return c.Client(c.t, AdminUser)
}

// Kubeconfig writes a kubeconfig file for user and returns its path.
func (c *Cluster) Kubeconfig(t testing.TB, user string) string {
	t.Helper()
	return c.writeKubeconfig(t, user, c.RESTConfig(t, user).BearerToken)
}

// writeKubeconfig writes DIR/NAME.kubeconfig, which authenticates with token.
func (c *Cluster) writeKubeconfig(t testing.TB, name, token string) string {
	t.Helper()
	cfg := c.RESTConfig(t, AdminUser)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: name}
	kc.CurrentContext = "kubetest"
	path := filepath.Join(c.dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return path
}

// StopAPIServer stops kube-apiserver (SIGTERM, SIGKILL after a deadline) and
// waits for it to exit. etcd keeps running, so StartAPIServer brings back the
// same cluster with the same port, certificates and objects.
func (c *Cluster) StopAPIServer(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	p := c.apiserver
	c.mu.Unlock()
	if p == nil || !p.running() {
		t.Fatal("kubetest: kube-apiserver is not running")
	}
	// Pooled connections point at the old server; drop them so the next
	// request dials afresh instead of failing on a dead connection.
	c.closeIdleConnections()
	if err := stop(p); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

// StartAPIServer starts kube-apiserver and waits until /readyz answers 200.
// A restart listens on the port of the first start. If that port is taken
// (ports.go says by whom it can be), a first start tries another port, a
// restart the same one until readyTimeout has passed.
func (c *Cluster) StartAPIServer(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	running := c.apiserver != nil && c.apiserver.running()
	c.mu.Unlock()
	if running {
		t.Fatal("kubetest: kube-apiserver already running")
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if c.port == "" {
			c.port, c.releasePort = reservePort(t)
		}
		offset := logSize(c.path("kube-apiserver.log"))
		err := c.startAPIServer(t)
		switch {
		case err == nil:
			c.started = true
			t.Logf("kubetest: kube-apiserver ready at %s after %v", c.URL(), time.Since(start).Round(time.Millisecond))
			return
		case !foundPortInUse(c.path("kube-apiserver.log"), offset):
			t.Fatalf("kubetest: %v\n%s", err, tail(c.path("kube-apiserver.log")))
		case !c.started && attempt < bindRetries:
			t.Logf("kubetest: port %s is in use; kube-apiserver tries another", c.port)
			c.releasePort()
			c.port = ""
		case c.started && time.Since(start) < readyTimeout:
			t.Logf("kubetest: port %s is in use; kube-apiserver tries it again", c.port)
			time.Sleep(time.Second) // between attempts, not a synchronisation
		default:
			t.Fatalf("kubetest: kube-apiserver's port %s stays in use: %v\n%s", c.port, err, tail(c.path("kube-apiserver.log")))
		}
	}
}

// startAPIServer starts kube-apiserver once and waits until /readyz answers
// 200; it returns an error if kube-apiserver exits first.
func (c *Cluster) startAPIServer(t testing.TB) error {
	t.Helper()
	p := c.spawn(t, "kube-apiserver", c.bin,
		"--etcd-servers="+c.etcdURL,
		"--bind-address=127.0.0.1",
		// Without an advertise address kube-apiserver looks for the host's
		// default route, which a sandbox may not have. The endpoint
		// reconcilers refuse a loopback address; with none, nothing
		// publishes the default/kubernetes endpoints, which these tests
		// do not read.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--secure-port="+c.port,
		// Self-signed serving certificates; they are kept across restarts.
		"--cert-dir="+c.path("certs"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+c.path("sa.key"),
		"--service-account-signing-key-file="+c.path("sa.key"),
		"--token-auth-file="+c.path("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		// The ServiceAccount admission plugin wants a token controller
		// (kube-controller-manager) that these tests do not run.
		"--disable-admission-plugins=ServiceAccount",
		// CNI manifests run privileged containers; every cluster that can
		// install a CNI allows them (kubeadm sets this too).
		"--allow-privileged=true",
		"--profiling=false",
	)
	c.mu.Lock()
	c.apiserver = p
	c.mu.Unlock()

	var rc rest.Interface
	return c.waitFor(t, p, "/readyz", func(ctx context.Context) (bool, error) {
		if rc == nil {
			// kube-apiserver writes its self-signed certificate (with its CA)
			// before it listens; kept across restarts.
			ca, err := os.ReadFile(c.path("certs", "apiserver.crt"))
			if err != nil {
				return false, nil
			}
			c.mu.Lock()
			c.caData = ca
			c.mu.Unlock()
			if rc, err = c.pollClient(t); err != nil {
				return false, err
			}
		}
		var code int
		err := rc.Get().AbsPath("/readyz").Do(ctx).StatusCode(&code).Error()
		return err == nil && code == http.StatusOK, nil
	})
}

// pollClient is an admin REST client that closes each connection after its
// reply, so that polling leaves no pooled connections behind.
func (c *Cluster) pollClient(t testing.TB) (rest.Interface, error) {
	t.Helper()
	cfg := c.RESTConfig(t, AdminUser)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	hc.Transport = withoutKeepAlives{hc.Transport}
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	return cs.Discovery().RESTClient(), nil
}

// withoutKeepAlives asks the server to close each connection after its reply.
type withoutKeepAlives struct{ rt http.RoundTripper }

func (w withoutKeepAlives) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Close = true
	return w.rt.RoundTrip(req)
}

func (c *Cluster) startEtcd(t testing.TB) {
	t.Helper()
	p := c.spawn(t, "etcd", "etcd",
		"--name=kubetest",
		"--data-dir="+c.path("etcd"),
		"--listen-client-urls="+c.etcdURL,
		"--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+etcdPeerSocket,
		"--initial-advertise-peer-urls="+etcdPeerSocket,
		"--initial-cluster=kubetest="+etcdPeerSocket,
		// Test data need not survive a power cut; fsync is most of etcd's latency.
		"--unsafe-no-fsync",
		"--logger=zap",
	)
	c.mu.Lock()
	c.etcd = p
	c.mu.Unlock()
	err := c.waitFor(t, p, "etcd /health", httpOK(c.EtcdClient(0), c.EtcdURL()+"/health"))
	if err != nil {
		t.Fatalf("kubetest: %v\n%s", err, tail(p.log))
	}
}

// writeAuthFiles writes the service-account signing key and the static token
// file for the users above.
func (c *Cluster) writeAuthFiles(t testing.TB) {
	t.Helper()
	// 2048 bits: the smallest size kube-apiserver accepts for RS256.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("kubetest: service-account key: %v", err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(c.path("sa.key"), pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	// token,user,uid[,"group,group"]
	var csv strings.Builder
	for _, u := range []struct{ name, groups string }{
		{AdminUser, "system:masters"},
		{OVSGateUser, ""},
		{NobodyUser, ""},
	} {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		c.tokens[u.name] = hex.EncodeToString(b)
		fmt.Fprintf(&csv, "%s,%s,%s", c.tokens[u.name], u.name, u.name)
		if u.groups != "" {
			fmt.Fprintf(&csv, ",%q", u.groups)
		}
		csv.WriteString("\n")
	}
	if err := os.WriteFile(c.path("tokens.csv"), []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

// spawn starts a daemon with its output in DIR/NAME.log. Its own process
// group keeps a Ctrl-C in the terminal for the test binary, and Pdeathsig
// kills it if the test binary dies without running its cleanups. (Pdeathsig
// follows the OS thread that forked, and Go only ends a thread when a
// goroutine exits while locked to it, which nothing here does.)
func (c *Cluster) spawn(t testing.TB, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := c.path(name + ".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "==== %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(append([]string{bin}, args...), " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = c.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubetest: start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p
}

// waitFor polls ready until it reports true, p exits (an error), or
// readyTimeout passes (a failure of t).
func (c *Cluster) waitFor(t testing.TB, p *proc, what string, ready func(context.Context) (bool, error)) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		ok, err := ready(attempt)
		cancelAttempt()
		if err != nil {
			t.Fatalf("kubetest: wait for %s: %v", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-p.exited:
			err := p.err
			if err == nil {
				err = errors.New("exit status 0")
			}
			return fmt.Errorf("%s exited before %s was ready: %w", p.name, what, err)
		case <-ctx.Done():
			t.Fatalf("kubetest: %s not ready after %v\n%s", what, readyTimeout, tail(p.log))
		case <-tick.C:
		}
	}
}

// stop sends p SIGTERM, then SIGKILL after stopTimeout, and waits for it to
// exit. os.Process signals through a pidfd, so it never hits a reused pid.
func stop(p *proc) error {
	if !p.running() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(stopTimeout):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.exited
	return fmt.Errorf("%s ignored SIGTERM for %v and was killed", p.name, stopTimeout)
}

func (c *Cluster) closeIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.httpClients {
		utilnet.CloseIdleConnectionsFor(hc.Transport)
	}
}

// cleanup stops kube-apiserver before etcd: on SIGTERM kube-apiserver removes
// its endpoint from etcd, and with etcd already gone it hangs for minutes.
func (c *Cluster) cleanup() {
	c.closeIdleConnections()
	c.mu.Lock()
	procs := []*proc{c.apiserver, c.etcd}
	c.mu.Unlock()
	for _, p := range procs {
		if p == nil {
			continue
		}
		if err := stop(p); err != nil {
			c.t.Errorf("kubetest: %v", err)
		}
	}
	if c.releasePort != nil {
		c.releasePort()
	}
	if c.t.Failed() {
		for _, p := range procs {
			if p != nil {
				c.t.Logf("kubetest: tail of %s:\n%s", p.log, tail(p.log))
			}
		}
	}
}

// tail is the end of a log file, for failure messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > logTail {
		b = b[len(b)-logTail:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// binary finds the cached kube-apiserver through hack/kube-apiserver.sh once
// per test binary.
var binary = sync.OnceValues(func() (string, error) { return hackPath("kube-apiserver.sh", "path") })

// hackPath runs the repository's hack/SCRIPT with args and returns the last
// line it prints: the path of what it built or extracted.
func hackPath(script string, args ...string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			var stderr bytes.Buffer
			cmd := exec.Command(filepath.Join(dir, "hack", script), args...)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				// Its message says how to build the binary.
				return "", errors.New(strings.TrimSpace(stderr.String()))
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			return lines[len(lines)-1], nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod above %s: run the tests from inside the ovsgate repository", wd)
		}
	}
}

// RequireAPIServer is require for tests that run kube-apiserver through
// hack/kube-apiserver.sh themselves rather than with Start.
func RequireAPIServer(t testing.TB) string {
	t.Helper()
	return require(t)
}

// ReservePort is a loopback port, free now, that no other kubetest cluster
// takes until t ends, for a daemon that a test starts with a port number
// (hack/kube-apiserver.sh start); ports.go says how it is picked.
func ReservePort(t testing.TB) int {
	t.Helper()
	port, release := reservePort(t)
	t.Cleanup(release)
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("kubetest: port %q: %v", port, err)
	}
	return n
}

// require returns the kube-apiserver binary's path, or skips t (fails it in
// CI) when kube-apiserver or etcd is missing.
func require(t testing.TB) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		testutil.SkipUnlessCI(t, "kubetest: "+format, args...)
	}
	bin, err := binary()
	if err != nil {
		missing("%v", err)
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		missing("etcd not found; run hack/kube-apiserver.sh deps (Debian's etcd-server) or make test")
	}
	return bin
}
