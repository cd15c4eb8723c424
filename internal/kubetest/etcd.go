package kubetest

// EtcdURL is etcd's client URL (plain http on loopback), where its /metrics
// tells, for one, how large its database has grown.
func (c *Cluster) EtcdURL() string { return c.etcdURL }
