package gate

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc (USER_HZ), 100 per second
// on every architecture Linux exposes to user space.
const clockTick = 10 * time.Millisecond

// busyShare is the share of a window that ovs-vswitchd's main thread must
// spend on the CPU for an unanswered call to mean "busy" rather than "hung".
// A main loop stuck in long work runs at most of a core; a stopped or
// deadlocked thread at none.
const busyShare = 10 // percent

// stallSample is how often the CPU time of a stalled ovs-vswitchd is sampled
// again, so that busy turning into hung (or back) is seen.
const stallSample = time.Second

// cpuReader returns the CPU time (user and system) of a process's main
// thread, and the process's start time, which tells a reused pid apart.
type cpuReader func(pid int) (used time.Duration, started uint64, err error)

// mainThreadCPU reads /proc/<pid>/task/<pid>/stat. ovs-vswitchd answers
// unixctl, OpenFlow and OVSDB on its main thread, whose id is the pid; its
// handler and revalidator threads keep running while the main loop is
// stuck, so only the main thread says whether that loop makes progress.
func mainThreadCPU(pid int) (time.Duration, uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(string(b))
}

// parseStat reads utime, stime (fields 14 and 15) and starttime (field 22)
// of a stat line; the command name in field 2 may hold spaces and
// parentheses, so the fields are counted from its last ')'.
func parseStat(line string) (time.Duration, uint64, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat line without a command name")
	}
	f := strings.Fields(line[i+1:]) // f[0] is field 3
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("stat line with %d fields", len(f)+2)
	}
	var n [3]uint64
	for j, field := range []int{14, 15, 22} {
		v, err := strconv.ParseUint(f[field-3], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("stat field %d: %w", field, err)
		}
		n[j] = v
	}
	return time.Duration(n[0]+n[1]) * clockTick, n[2], nil
}
