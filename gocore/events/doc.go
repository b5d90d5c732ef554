// Package events tells why a process of a run ended: "exited 3", "killed
// by SIGKILL from pid 1234 (bash)", "killed by the OOM killer (cgroup /x,
// rss 3.1 GiB, limit 4 GiB)", "SIGSEGV (a memory fault in the process
// itself)".
//
// # Contract
//
//   - A Tracer is made once per runtime that starts processes (New), lazily
//     at its first start. It loads two small eBPF programs (cilium/ebpf,
//     written with its asm package: no clang, no generated objects) on the
//     tracepoints signal:signal_generate and oom:mark_victim, with field
//     offsets read from the tracepoints' format files at load time
//     (tracefs is mounted at /sys/kernel/tracing if it is not mounted).
//   - The programs look the target up in a map of watched pids first, so a
//     signal or OOM kill of any other process on the machine costs one
//     hash lookup in the kernel and nothing else. For a watched process they
//     record the sender (tgid, comm, siginfo code) of each delivered signal,
//     keyed by (pid, signal), and the OOM killer's choice with the sizes
//     the tracepoint gives, each stamped with CLOCK_MONOTONIC so that what
//     an earlier process with the same pid left is ignored. The watched set
//     holds 16384 pids (a child started when it is full goes unwatched: its
//     sender is unknown); the records are LRU maps (4096 signals, 1024 OOM
//     kills): what is never collected is evicted, never accumulated. The
//     kernel preallocates them: ~2 MB of locked memory per Tracer.
//   - Watch(pid) is called as soon as a child's pid is known: one map
//     update with eBPF. In the fallback it also reads the child's memory
//     cgroup (v1 "memory" line of /proc/<pid>/cgroup, or v2), its OOM kill
//     count and its limit while the child lives. A signal sent before
//     Watch has no known sender.
//   - Reason(pid, code) is called once the child was reaped, with its status
//     in Python's convention (exit code, or minus the signal); it collects
//     and deletes what was recorded and stops watching. Forget stops
//     watching without a reason (a child released unwaited).
//   - Fallback: when eBPF cannot load (not root, no BPF, a locked-down
//     kernel, Options.NoBPF) New still returns a working Tracer whose Mode
//     is "fallback" and LoadError says why. Reasons then come from the
//     status, the kernel log (/dev/kmsg "oom-kill:"/"Killed process <pid>"
//     lines logged since Watch, when readable) and the cgroup's OOM kill
//     counter. They say less, never something false: "killed by SIGKILL
//     (sender unknown)", or "...; the OOM killer acted in its cgroup /x
//     meanwhile" when only the counter moved.
//   - The cgroup of an OOM reason is the one the kernel log names (the
//     cgroup that ran out), else (fallback) the one the process was in at
//     Watch, else none: without a readable kernel log eBPF mode names no
//     cgroup.
//
// Linux only; eBPF needs CAP_BPF and CAP_PERFMON (root in practice).
package events
