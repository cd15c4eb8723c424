package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/ovsgate/ovsgate/gate"
	"github.com/ovsgate/ovsgate/internal/kubetest"
	"github.com/ovsgate/ovsgate/nodecondition"
)

const (
	condType  = "ovsgate.io/OVSReady"
	leaseNS   = "kube-node-lease"
	fleetRole = "fleet-node"
)

var ready = gate.State{Status: gate.Status{Ready: true}, Cause: gate.CauseReady, Settled: true}

// vswitchdGone is what the gate says while ovs-vswitchd is down; the pid
// makes each restart's message its own, as the gate's are.
func vswitchdGone(pid int) gate.State {
	return gate.State{Status: gate.Status{Reason: fmt.Sprintf("ovs-vswitchd (pid %d) exited", pid)}, Cause: gate.CauseVSwitchdNotRunning, Settled: true}
}

// pause waits d, or less when ctx ends first (false). It paces the
// simulation; nothing waits on it for a result.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// grant lets the ovsgate user do what both simulated programs need: the
// writer's nodes get and nodes/status patch (what the manifests grant
// ovsgate), and the kubelet's Lease renewals. Both are the same user, so
// that authorization costs both the same.
func grant(tb testing.TB, admin kubernetes.Interface) {
	tb.Helper()
	ctx := context.Background()
	_, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: fleetRole},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "update"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: fleetRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: fleetRole},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: kubetest.OVSGateUser}},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
}

// nodeName is the i-th simulated node's name.
func nodeName(i int) string { return fmt.Sprintf("fleet-%05d", i) }

// kubeletConditions are the conditions a kubelet keeps on its Node.
var kubeletConditions = []struct {
	typ             corev1.NodeConditionType
	status          corev1.ConditionStatus
	reason, message string
}{
	{corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
	{corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
	{corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"},
	{corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"},
}

// nodeObject is a Node as a kubelet registers and reports it: labels,
// capacity, the kubelet's four conditions, addresses, versions and the
// images it holds (a kubelet lists up to 50; 30 here). Its size decides
// what each status write costs the API server and etcd, for ovsgate's
// writes and the kubelet's alike.
func nodeObject(i int) *corev1.Node {
	name := nodeName(i)
	now := metav1.Now()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname":           name,
				"kubernetes.io/os":                 "linux",
				"kubernetes.io/arch":               "amd64",
				"beta.kubernetes.io/os":            "linux",
				"beta.kubernetes.io/arch":          "amd64",
				"node.kubernetes.io/instance-type": "m6i.2xlarge",
				"topology.kubernetes.io/region":    "eu-west-1",
				"topology.kubernetes.io/zone":      fmt.Sprintf("eu-west-1%c", 'a'+i%3),
			},
			Annotations: map[string]string{
				"node.alpha.kubernetes.io/ttl":                           "0",
				"volumes.kubernetes.io/controller-managed-attach-detach": "true",
			},
		},
		Spec: corev1.NodeSpec{
			PodCIDR:    fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256),
			PodCIDRs:   []string{fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)},
			ProviderID: "aws:///eu-west-1a/i-0" + fmt.Sprintf("%016x", i),
		},
		Status: corev1.NodeStatus{
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU:              resource.MustParse("8"),
				corev1.ResourceMemory:           resource.MustParse("32386176Ki"),
				corev1.ResourcePods:             resource.MustParse("110"),
				corev1.ResourceEphemeralStorage: resource.MustParse("104845292Ki"),
				"hugepages-1Gi":                 resource.MustParse("0"),
				"hugepages-2Mi":                 resource.MustParse("0"),
			},
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:              resource.MustParse("7910m"),
				corev1.ResourceMemory:           resource.MustParse("31369344Ki"),
				corev1.ResourcePods:             resource.MustParse("110"),
				corev1.ResourceEphemeralStorage: resource.MustParse("95551679124"),
				"hugepages-1Gi":                 resource.MustParse("0"),
				"hugepages-2Mi":                 resource.MustParse("0"),
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("172.20.%d.%d", i/256, i%256)},
				{Type: corev1.NodeHostName, Address: name},
				{Type: corev1.NodeInternalDNS, Address: name + ".eu-west-1.compute.internal"},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID:               fmt.Sprintf("%032x", i),
				SystemUUID:              fmt.Sprintf("ec2%05d-0000-0000-0000-000000000000", i),
				BootID:                  fmt.Sprintf("%08x-0000-4000-8000-000000000000", i),
				KernelVersion:           "6.1.0-28-cloud-amd64",
				OSImage:                 "Debian GNU/Linux 12 (bookworm)",
				ContainerRuntimeVersion: "containerd://1.7.24",
				KubeletVersion:          "v1.37.2",
				OperatingSystem:         "linux",
				Architecture:            "amd64",
			},
		},
	}
	for _, c := range kubeletConditions {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{
			Type: c.typ, Status: c.status, Reason: c.reason, Message: c.message,
			LastHeartbeatTime: now, LastTransitionTime: now,
		})
	}
	for j := range 30 {
		repo := fmt.Sprintf("registry.example.com/platform/component-%02d", j)
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names: []string{
				fmt.Sprintf("%s@sha256:%064x", repo, j+1),
				fmt.Sprintf("%s:v1.%d.%d", repo, j%7, j%3),
			},
			SizeBytes: int64(20_000_000 + j*3_000_000),
		})
	}
	return n
}

// createNodes creates n Nodes and their Leases, on workers in parallel.
func createNodes(tb testing.TB, admin kubernetes.Interface, n int) {
	tb.Helper()
	ctx := context.Background()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaseNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				errs <- createNode(ctx, admin, i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func createNode(ctx context.Context, admin kubernetes.Interface, i int) error {
	want := nodeObject(i)
	node, err := admin.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", want.Name, err)
	}
	if len(node.Status.Conditions) == 0 {
		// In case the API server drops the status of a new Node.
		node.Status = want.Status
		if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("status of node %s: %w", want.Name, err)
		}
	}
	isController := true
	_, err = admin.CoordinationV1().Leases(leaseNS).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: node.Name,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID, Controller: &isController,
			}},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       &node.Name,
			LeaseDurationSeconds: new(int32(40)),
			RenewTime:            &metav1.MicroTime{Time: time.Now()},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create lease %s: %w", node.Name, err)
	}
	return nil
}

// nodeConfig is the client configuration of one simulated node: its own
// copy, with a dialer of its own so that client-go gives it a transport and
// connections of its own (clients with the same TLS settings would share
// one), as a separate pod on a separate machine has.
func nodeConfig(base *rest.Config, rec *recorder, i int, kubelet bool) *rest.Config {
	cfg := rest.CopyConfig(base)
	cfg.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	cfg.WrapTransport = rec.wrap(i, kubelet)
	return cfg
}

// writerFleet is one ovsgate node-condition writer per simulated node, each
// with the daemon's defaults but a compressed heartbeat.
type writerFleet struct {
	writers []*nodecondition.Writer
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
}

// startWriters starts the writers and hands each the ready state, spread
// over one heartbeat, so that their heartbeats are spread as a real
// fleet's are rather than all at once.
func startWriters(tb testing.TB, base *rest.Config, rec *recorder, n int, heartbeat time.Duration) *writerFleet {
	tb.Helper()
	// As serve's client: its user agent, client-go's defaults otherwise (QPS
	// and Burst do not apply to the writer).
	base = rest.CopyConfig(base)
	base.UserAgent, base.QPS, base.Burst, base.Timeout = "ovsgate", 0, 0, 0
	f := &writerFleet{errs: make(chan error, n)}
	for i := range n {
		w, err := nodecondition.New(nodeConfig(base, rec, i, false), nodecondition.Config{Node: nodeName(i), Type: condType, Heartbeat: heartbeat})
		if err != nil {
			tb.Fatal(err)
		}
		f.writers = append(f.writers, w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	tb.Cleanup(func() { f.stop(tb) })
	for _, w := range f.writers {
		f.wg.Go(func() {
			if err := w.Run(ctx); err != nil {
				f.errs <- err
			}
		})
	}
	start := time.Now()
	for i, w := range f.writers {
		pause(ctx, time.Until(start.Add(heartbeat*time.Duration(i)/time.Duration(n))))
		w.Update(ready)
	}
	return f
}

// stop ends every writer and waits for it; it may be called more than once.
func (f *writerFleet) stop(tb testing.TB) {
	tb.Helper()
	f.cancel()
	f.wg.Wait()
	for {
		select {
		case err := <-f.errs:
			tb.Errorf("writer: %v", err)
		default:
			return
		}
	}
}

// kubelet is one simulated kubelet: the two requests it sends while
// nothing changes, on a client of its own with the kubelet's defaults
// (protobuf, 50 QPS, burst 100).
type kubelet struct {
	name  string
	hc    *http.Client
	core  corev1client.CoreV1Interface
	coord coordinationv1client.CoordinationV1Interface
	lease *coordinationv1.Lease
}

func newKubelet(tb testing.TB, base *rest.Config, rec *recorder, i int) *kubelet {
	tb.Helper()
	cfg := nodeConfig(base, rec, i, true)
	cfg.UserAgent = "kubelet/v1.37.2 (linux/amd64) kubernetes"
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.QPS, cfg.Burst = 50, 100
	cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	cfg.Timeout = 10 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	core, err := corev1client.NewForConfigAndClient(cfg, hc)
	if err != nil {
		tb.Fatal(err)
	}
	coord, err := coordinationv1client.NewForConfigAndClient(cfg, hc)
	if err != nil {
		tb.Fatal(err)
	}
	return &kubelet{name: nodeName(i), hc: hc, core: core, coord: coord}
}

// connect reads the Lease, as a kubelet does once when it starts, which
// also opens its connection.
func (k *kubelet) connect(ctx context.Context) error {
	l, err := k.coord.Leases(leaseNS).Get(ctx, k.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get lease %s: %w", k.name, err)
	}
	k.lease = l
	return nil
}

// renewLease is the kubelet's heartbeat: an update of the Lease it last
// wrote with a new renewTime, with no read before it (it reads again only
// after a failure).
func (k *kubelet) renewLease(ctx context.Context) {
	l := k.lease.DeepCopy()
	l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	got, err := k.coord.Leases(leaseNS).Update(ctx, l, metav1.UpdateOptions{})
	if err == nil {
		k.lease = got
		return
	}
	if ctx.Err() == nil {
		_ = k.connect(ctx) // the failure is in the recorder
	}
}

// patchStatus is the kubelet's Node status report while nothing changes: a
// read of its Node from the API server's cache, then a strategic-merge
// patch of the difference (the four conditions' heartbeat times), made as
// the kubelet makes it.
func (k *kubelet) patchStatus(ctx context.Context) {
	old, err := k.core.Nodes().Get(ctx, k.name, metav1.GetOptions{ResourceVersion: "0"})
	if err != nil {
		return // in the recorder
	}
	now := metav1.Now()
	upd := old.DeepCopy()
	for i := range upd.Status.Conditions {
		for _, c := range kubeletConditions {
			if upd.Status.Conditions[i].Type == c.typ {
				upd.Status.Conditions[i].LastHeartbeatTime = now
			}
		}
	}
	oldJSON, err := json.Marshal(old)
	if err != nil {
		return
	}
	newJSON, err := json.Marshal(upd)
	if err != nil {
		return
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, corev1.Node{})
	if err != nil {
		return
	}
	_, _ = k.core.Nodes().Patch(ctx, k.name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
}

// every runs do for each kubelet once a period, each at a phase of its
// own, until ctx ends; it returns when every kubelet is done. A request
// under way when ctx ends is let finish.
func every(ctx context.Context, kubelets []*kubelet, period time.Duration, do func(*kubelet, context.Context)) {
	var wg sync.WaitGroup
	for _, k := range kubelets {
		wg.Go(func() {
			next := time.Now().Add(rand.N(period))
			for pause(ctx, time.Until(next)) {
				do(k, context.WithoutCancel(ctx))
				next = next.Add(period)
			}
		})
	}
	wg.Wait()
}
