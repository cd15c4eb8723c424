package gate

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/digitalocean/go-openvswitch/ovsnl"

	"github.com/ovsgate/ovsgate/ovsdb"
)

// kernelDiagnosisTTL bounds how often the kernel is asked: the answer only
// enriches a reason, so it may be a few seconds old.
const kernelDiagnosisTTL = 10 * time.Second

// kernelDiagnosis explains why a bridge on the kernel ("system") datapath is
// not ready, by asking the kernel over generic netlink which Open vSwitch
// datapaths exist.
type kernelDiagnosis struct {
	mu      sync.Mutex
	checked time.Time
	message string
	list    func() ([]string, error) // names of the kernel datapaths; replaced in tests
}

func newKernelDiagnosis() *kernelDiagnosis {
	return &kernelDiagnosis{list: listKernelDatapaths}
}

// explain returns a short diagnosis for a not-ready bridge, or "" when the
// bridge is not on the kernel datapath or the kernel side looks fine.
func (k *kernelDiagnosis) explain(info ovsdb.BridgeInfo) string {
	if !info.Exists || (info.DatapathType != "" && info.DatapathType != "system") {
		return ""
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) < kernelDiagnosisTTL && !k.checked.IsZero() {
		return k.message
	}
	k.checked = time.Now()
	k.message = k.diagnose()
	return k.message
}

func (k *kernelDiagnosis) diagnose() string {
	names, err := k.list()
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "kernel datapath: openvswitch kernel module not loaded"
	case err != nil:
		return fmt.Sprintf("kernel datapath: cannot list datapaths: %v", err)
	}
	for _, n := range names {
		if n == "ovs-system" {
			return ""
		}
	}
	return "kernel datapath: ovs-system datapath absent"
}

func listKernelDatapaths() ([]string, error) {
	c, err := ovsnl.New()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if c.Datapath == nil {
		return nil, os.ErrNotExist
	}
	dps, err := c.Datapath.List()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(dps))
	for _, dp := range dps {
		names = append(names, dp.Name)
	}
	return names, nil
}
