package kubetest

import (
	"context"
	"fmt"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// tokenLifetime is what a test asks of the TokenRequest API: far beyond any
// test, and the API server's default besides.
const tokenLifetime = 3600

// ServiceAccountToken asks the TokenRequest API for a token of the
// ServiceAccount namespace/name, bound to pod unless pod is nil. A token
// bound to a Pod with spec.nodeName names that Node: the API server puts it
// in the token, and its authenticator then in the user's extra
// authentication.kubernetes.io/node-name. No kubelet is needed, only the
// Pod object (and the ServiceAccount, which the authenticator looks up on
// every request).
func (c *Cluster) ServiceAccountToken(t testing.TB, namespace, name string, pod *corev1.Pod) string {
	t.Helper()
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: new(int64(tokenLifetime))}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authnv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID,
		}
	}
	tr, err := c.AdminClient().CoreV1().ServiceAccounts(namespace).CreateToken(t.Context(), name, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: token of %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

// UseToken makes a bearer token, e.g. from ServiceAccountToken, known as
// the user name: RESTConfig, Client and Kubeconfig then act with it. name
// becomes part of a file name. Not safe for use concurrently with them.
func (c *Cluster) UseToken(t testing.TB, name, token string) {
	t.Helper()
	if _, ok := c.tokens[name]; ok {
		t.Fatalf("kubetest: user %q is known already", name)
	}
	c.tokens[name] = token
}

// WhoAmI asks the API server who cs's credentials are (a
// SelfSubjectReview): the user name, groups and extra that authorizers and
// admission see.
func WhoAmI(ctx context.Context, cs kubernetes.Interface) (authnv1.UserInfo, error) {
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authnv1.UserInfo{}, fmt.Errorf("self subject review: %w", err)
	}
	return r.Status.UserInfo, nil
}
