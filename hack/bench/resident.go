package main

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// floorMem is the memory of the floor server (hack/bench/floor): a
// default net/http server answering "ok" with nothing else linked in.
type floorMem struct {
	rssKiB, anonKiB, fileKiB int
	binBytes                 int64
}

// floorMemory builds the floor server as ovsgate is built (static,
// stripped), sends it the load the day of probes starts with, and reads
// its RSS as the day's first reading of serve's is read: soakSettle after
// the load. It is the least any Go HTTP daemon holds after answering
// probes, measured in the same run as serve.
func floorMemory(dir string) (floorMem, error) {
	var fm floorMem
	bin := filepath.Join(dir, "floor")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./hack/bench/floor")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fm, fmt.Errorf("build the floor server: %w: %s", err, strings.TrimSpace(string(out)))
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return fm, err
	}
	fm.binBytes = fi.Size()
	cmd, addr, stop, err := startServer(bin)
	if err != nil {
		return fm, err
	}
	defer stop()
	pid := cmd.Process.Pid
	if _, _, err := httpCost(pid, "http://"+addr+"/readyz", soakWarmup, soakClients, 0); err != nil {
		return fm, err
	}
	time.Sleep(soakSettle)
	st := procKiB(pid, "status")
	fm.rssKiB, fm.anonKiB, fm.fileKiB = st["VmRSS"], st["RssAnon"], st["RssFile"]
	if fm.rssKiB == 0 {
		return fm, errors.New("the floor server's RSS could not be read")
	}
	return fm, nil
}

// sectionResidency is how much of one section of a binary a process has
// in memory.
type sectionResidency struct {
	name           string
	resident, size int64 // bytes
}

// residentSections reads from /proc/PID/pagemap which pages of each
// loaded section of bin (the executable pid runs, at fixed addresses)
// are in the process's memory. Sections under 64 KiB are left out; a page
// shared by two sections counts for both.
func residentSections(pid int, bin string) ([]sectionResidency, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("%s is not loaded at fixed addresses (ELF type %s)", bin, f.Type)
	}
	pm, err := os.Open("/proc/" + strconv.Itoa(pid) + "/pagemap")
	if err != nil {
		return nil, err
	}
	defer pm.Close()
	page := uint64(os.Getpagesize())
	var out []sectionResidency
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Size < 64<<10 {
			continue
		}
		first, last := s.Addr/page, (s.Addr+s.Size-1)/page
		entries := make([]byte, (last-first+1)*8)
		if _, err := pm.ReadAt(entries, int64(first*8)); err != nil {
			return nil, fmt.Errorf("pagemap of %s: %w", s.Name, err)
		}
		r := sectionResidency{name: s.Name, size: int64(s.Size)}
		for i := 0; i < len(entries); i += 8 {
			if binary.LittleEndian.Uint64(entries[i:])>>63 == 1 { // bit 63: page present
				r.resident += int64(page)
			}
		}
		r.resident = min(r.resident, r.size)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].size > out[j].size })
	return out, nil
}

// sectionsText is a list of sections' residency for the breakdown row.
func sectionsText(secs []sectionResidency) string {
	var parts []string
	for _, s := range secs {
		parts = append(parts, fmt.Sprintf("%s %s of %s", s.name, mibOfBytes(float64(s.resident)), mibOfBytes(float64(s.size))))
	}
	return strings.Join(parts, ", ")
}
