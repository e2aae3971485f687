package oom

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// memcgOOM is the kernel function whose presence on the stack of a kill makes it
// memcg-constrained: every memory cgroup OOM goes through it (a charge over the limit, a
// write of memory.max below the usage), a global one never does.
const memcgOOM = "mem_cgroup_out_of_memory"

// memcgOOMRange returns where the code of memcgOOM lies in the running kernel, [start,
// end), from the kallsyms file at path, or why it cannot: the kernel shows zero addresses
// to a process without CAP_SYSLOG (unless perf_event_paranoid ≤ 1 and kptr_restrict 0),
// and a kernel that inlined the function has no symbol for it.
func memcgOOMRange(path string) (start, end uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	start, end, err = parseKallsyms(f, memcgOOM)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return start, end, nil
}

// errHiddenAddresses means kallsyms shows every address as zero.
var errHiddenAddresses = errors.New("kernel addresses hidden (needs CAP_SYSLOG, or kptr_restrict 0 and perf_event_paranoid ≤ 1)")

// parseKallsyms finds the text symbol name in a /proc/kallsyms ("<hex address> <type>
// <name> [<module>]" a line) and returns its address and the next higher address of any
// symbol, which is where its code ends. The file is read once, line by line. The core
// kernel's lines come first, sorted by address, so none before the symbol's lies above
// it; modules and BPF programs follow in no order, so the end is the smallest address
// above the start among the lines after it.
func parseKallsyms(r io.Reader, name string) (start, end uint64, err error) {
	var lines, zero int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		lines++
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 || len(line) < sp+3 || line[sp+2] != ' ' {
			continue
		}
		addr, err := strconv.ParseUint(string(line[:sp]), 16, 64)
		if err != nil {
			continue
		}
		if addr == 0 {
			zero++
			continue
		}
		typ, rest := line[sp+1], line[sp+3:]
		sym := rest
		if i := bytes.IndexAny(rest, " \t"); i >= 0 {
			sym = rest[:i]
		}
		if start == 0 && (typ == 't' || typ == 'T') && string(sym) == name {
			start = addr
		}
		if start != 0 && addr > start && (end == 0 || addr < end) {
			end = addr
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if start == 0 {
		if lines > 0 && zero == lines {
			return 0, 0, errHiddenAddresses
		}
		return 0, 0, fmt.Errorf("no text symbol %s (inlined by this kernel's compiler?)", name)
	}
	if end == 0 {
		return 0, 0, fmt.Errorf("no symbol after %s to tell where it ends", name)
	}
	return start, end, nil
}

// marginPages is how close to its limit a memory cgroup's usage must be to count as at
// its limit, in pages of page bytes: two PMD huge pages (the charge that failed was at
// most one), at least 4 MiB. A huge page is 2 MiB on x86 and on arm64 with 4 KiB pages,
// but 32 MiB with 16 KiB and 512 MiB with 64 KiB pages; the kernel tells in
// <sysfs>/kernel/mm/transparent_hugepage/hpage_pmd_size.
func marginPages(sysfs string, page uint64) uint64 {
	huge := uint64(2 << 20)
	if b, err := os.ReadFile(filepath.Join(sysfs, "kernel", "mm", "transparent_hugepage", "hpage_pmd_size")); err == nil {
		if n, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64); err == nil && n > 0 {
			huge = n
		}
	}
	margin := max(2*huge, 4<<20)
	return (margin + page - 1) / page
}
