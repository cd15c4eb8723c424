package deploy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovsgate/ovsgate/internal/kubetest"
)

// The manifests' pods need host networking and hostPath volumes, which Pod
// Security Admission allows only at the privileged level: a real
// kube-apiserver refuses them in a baseline namespace, with the message
// the README quotes, and takes them in a privileged one.
func TestManifestsNeedAPrivilegedNamespace(t *testing.T) {
	templates := map[string]corev1.PodTemplateSpec{
		baseDir:       renderDaemonSet(t, baseDir).Spec.Template,
		standaloneDir: renderStandalone(t, standaloneDir).ds.Spec.Template,
	}
	c := kubetest.Start(t)
	admin := c.AdminClient()
	ctx := t.Context()
	for _, level := range []string{"baseline", "privileged"} {
		_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: "psa-" + level, Labels: map[string]string{"pod-security.kubernetes.io/enforce": level},
		}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	for dir, tmpl := range templates {
		t.Run(dir, func(t *testing.T) {
			for _, level := range []string{"baseline", "privileged"} {
				pod := &corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
				pod.Name, pod.Namespace = "ovsgate", "psa-"+level
				_, err := admin.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if level == "privileged" {
					assert.NoError(t, err, "a privileged namespace takes the pod")
					continue
				}
				require.Error(t, err, "a baseline namespace refuses the pod")
				assert.True(t, apierrors.IsForbidden(err), "%v", err)
				assert.Contains(t, err.Error(), `violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), hostPath volumes`)
			}
		})
	}
}
