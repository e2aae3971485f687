package collectors

// All is every collector picket has, sorted by name. Adding a collector: its file, its
// fixtures under testdata/<name>/, and one line here.
var All = []Factory{
	{Name: "conntrack", Default: true, Help: "netfilter connection tracking table size", Series: conntrackSeries, New: newConntrack},
	{Name: "cpu", Default: true, Help: "CPU time per mode from /proc/stat", Series: cpuSeries, New: newCPU},
	{Name: "disk", Default: true, Help: "I/O of whole block devices from /proc/diskstats", Series: diskSeries, New: newDisk},
	{Name: "filefd", Default: true, Help: "allocated file handles from /proc/sys/fs/file-nr", Series: filefdSeries, New: newFilefd},
	{Name: "fs", Default: true, Help: "space and inodes of real filesystems (statfs)", Series: fsSeries, New: newFS},
	{Name: "load", Default: true, Help: "load averages from /proc/loadavg", Series: loadSeries, New: newLoad},
	{Name: "memory", Default: true, Help: "all of /proc/meminfo", Series: memorySeries, New: newMemory},
	{Name: "net", Default: true, Help: "per-interface counters from /proc/net/dev", Series: netSeries, New: newNet},
	{Name: "netstat", Default: true, Help: "protocol counters from /proc/net/snmp and /proc/net/netstat", Series: netstatSeries, New: newNetstat},
	{Name: "oom", Default: true, Help: "OOM kills, host-wide and per memory cgroup, each logged with its victim and whether a cgroup's limit or the host ran out, from an eBPF probe (needs BTF and CAP_BPF+CAP_PERFMON; kernels before 6.8 whose mark_victim passes only a pid: the kernel log, CAP_SYSLOG). Memcg or global is read off the kernel stack; without CAP_SYSLOG (kernel addresses hidden) it is guessed from a cgroup of the victim near its limit, and a global OOM under a cgroup near its own limit (Kubernetes' kubepods) then reads as memcg", Series: oomSeries, Hooks: oomHooks, Variant: oomVariant, New: newOOM},
	{Name: "pressure", Default: true, Help: "pressure stall time from /proc/pressure", Series: pressureSeries, New: newPressure},
	{Name: "processes", Default: false, Help: "processes and threads by state; off by default: it reads every /proc/<pid>/stat, the one collector whose cost grows with the host's process count", Series: processesSeries, New: newProcesses},
	{Name: "runqlat", Default: true, Help: "run-queue latency histograms (time waiting for a CPU), host-wide and per cgroup, kept in the kernel by an eBPF probe (needs BTF and CAP_BPF+CAP_PERFMON)", Series: runqlatSeries, Hooks: runqlatHooks, New: newRunqlat},
	{Name: "sockstat", Default: true, Help: "sockets in use from /proc/net/sockstat", Series: sockstatSeries, New: newSockstat},
	{Name: "stat", Default: true, Help: "context switches, forks, interrupts, procs, boot time from /proc/stat", Series: statSeries, New: newStat},
	{Name: "uptime", Default: true, Help: "time since boot from /proc/uptime", Series: uptimeSeries, New: newUptime},
	{Name: "vmstat", Default: true, Help: "all of /proc/vmstat", Series: vmstatSeries, New: newVmstat},
}
