package kubetest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovsgate/ovsgate/internal/kubetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const nodeName = "kubetest-node"

// TestCluster runs one cluster through what the gate's tests need from it,
// then checks that its cleanup left no daemon behind.
func TestCluster(t *testing.T) {
	var spawned []process
	t.Run("cluster", func(t *testing.T) {
		c := kubetest.Start(t)
		spawned = []process{
			{"etcd", c.EtcdPID(), startTime(t, c.EtcdPID())},
			{"kube-apiserver", c.APIServerPID(), startTime(t, c.APIServerPID())},
		}
		admin := c.AdminClient()
		ctx := t.Context()

		_, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{})
		require.NoError(t, err)

		t.Run("users", func(t *testing.T) { testUsers(t, c) })
		t.Run("rbac", func(t *testing.T) { testRBAC(t, c, admin) })
		t.Run("etcd metrics", func(t *testing.T) { testEtcdMetrics(t, c) })

		t.Run("restart", func(t *testing.T) {
			before, err := admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			require.NoError(t, err)
			etcdPID := c.EtcdPID()

			c.StopAPIServer(t)
			assert.Zero(t, c.APIServerPID())
			_, err = admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			assert.Error(t, err, "kube-apiserver is stopped")

			c.StartAPIServer(t)
			assert.Equal(t, etcdPID, c.EtcdPID(), "etcd kept running")
			spawned = append(spawned, process{"kube-apiserver (restarted)", c.APIServerPID(), startTime(t, c.APIServerPID())})
			// The client made before the restart works again, and the node
			// (with the condition patched in above) came back from etcd.
			after, err := admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, before.UID, after.UID)
			assert.Equal(t, before.Status.Conditions, after.Status.Conditions)
		})
	})
	if len(spawned) == 0 {
		t.Skip("no cluster ran, see above")
	}
	for _, p := range spawned {
		require.NotZero(t, p.pid, p.name)
		assert.False(t, p.alive(), "%s (pid %d) outlived the test's cleanup", p.name, p.pid)
	}
}

// testEtcdMetrics checks that etcd's /metrics, which the fleet benchmark reads
// for the database's size, answers through EtcdClient on etcd's unix socket.
func testEtcdMetrics(t *testing.T, c *kubetest.Cluster) {
	hc := c.EtcdClient(30 * time.Second)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, c.EtcdURL()+"/metrics", nil)
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "\netcd_mvcc_db_total_size_in_bytes ")
}

// testUsers checks that each static user authenticates as itself, through a
// clientset and through a kubeconfig file.
func testUsers(t *testing.T, c *kubetest.Cluster) {
	for _, tc := range []struct {
		user   string
		groups []string
	}{
		{kubetest.AdminUser, []string{"system:masters", "system:authenticated"}},
		{kubetest.OVSGateUser, []string{"system:authenticated"}},
		{kubetest.NobodyUser, []string{"system:authenticated"}},
	} {
		t.Run(tc.user, func(t *testing.T) {
			cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig(t, tc.user))
			require.NoError(t, err)
			fromFile, err := kubernetes.NewForConfig(cfg)
			require.NoError(t, err)
			for name, cs := range map[string]kubernetes.Interface{"client": c.Client(t, tc.user), "kubeconfig": fromFile} {
				r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
				require.NoError(t, err, name)
				assert.Equal(t, tc.user, r.Status.UserInfo.Username, name)
				assert.ElementsMatch(t, tc.groups, r.Status.UserInfo.Groups, name)
			}
		})
	}
}

// testRBAC grants OVSGateUser what the gate needs on nodes and checks that
// it may patch a node's status and nothing more, and NobodyUser nothing.
func testRBAC(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	ctx := t.Context()
	_, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "ovsgate"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ovsgate"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "ovsgate"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: kubetest.OVSGateUser}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	waitAllowed(t, c, kubetest.OVSGateUser, "patch", "nodes", "status")

	for _, tc := range []struct {
		user, subresource, condition string
		want                         int
	}{
		{kubetest.OVSGateUser, "status", "OVSGateReady", http.StatusOK},
		{kubetest.OVSGateUser, "", "OVSGateSpec", http.StatusForbidden},
		{kubetest.NobodyUser, "status", "NobodyReady", http.StatusForbidden},
	} {
		t.Run(tc.user+"/"+tc.subresource, func(t *testing.T) {
			now := metav1.NewTime(time.Now())
			patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
				Type:               corev1.NodeConditionType(tc.condition),
				Status:             corev1.ConditionTrue,
				Reason:             "Test",
				LastHeartbeatTime:  now,
				LastTransitionTime: now,
			}}}})
			require.NoError(t, err)

			req := c.Client(t, tc.user).CoreV1().RESTClient().Patch(types.StrategicMergePatchType).
				Resource("nodes").Name(nodeName).Body(patch)
			if tc.subresource != "" {
				req = req.SubResource(tc.subresource)
			}
			var code int
			req.Do(ctx).StatusCode(&code)
			assert.Equal(t, tc.want, code)

			node, err := admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			require.NoError(t, err)
			var got []string
			for _, cond := range node.Status.Conditions {
				got = append(got, string(cond.Type))
			}
			if tc.want == http.StatusOK {
				assert.Contains(t, got, tc.condition)
			} else {
				assert.NotContains(t, got, tc.condition)
			}
		})
	}
}

// waitAllowed waits until the authorizer, which learns of new bindings
// through a watch, allows user the verb.
func waitAllowed(t *testing.T, c *kubetest.Cluster, user, verb, resource, subresource string) {
	t.Helper()
	cs := c.Client(t, user)
	assert.Eventually(t, func() bool {
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{Verb: verb, Resource: resource, Subresource: subresource}},
		}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed
	}, 10*time.Second, 20*time.Millisecond, "%s may %s %s/%s", user, verb, resource, subresource)
}

// process is a daemon the cluster spawned, named by pid and start time so a
// reused pid is not mistaken for it.
type process struct {
	name  string
	pid   int
	start string
}

func (p process) alive() bool {
	st, err := readStartTime(p.pid)
	return err == nil && st == p.start
}

func startTime(t *testing.T, pid int) string {
	t.Helper()
	require.NotZero(t, pid)
	st, err := readStartTime(pid)
	require.NoError(t, err)
	return st
}

// readStartTime is field 22 of /proc/PID/stat: when the process started, in
// clock ticks since boot.
func readStartTime(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	// Field 2, the command name, is in parentheses and may hold spaces.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fields[19], nil
}
