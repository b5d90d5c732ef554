package events

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// The eBPF side: three maps and two tracepoint programs, written with
// cilium/ebpf's asm package (no clang at build time, no generated object
// files in the repository). Field offsets come from the tracepoints' format
// files at load time, so one binary fits every kernel that has the fields.

// sigKey is the key of the signal map: the watched process and the signal.
// Keying by signal, not by pid alone, lets Reason ask for the very signal
// the wait status names, not whatever came last (a SIGTERM the process
// handled, then the SIGKILL that ended it). Sig has kernelSig set when the
// kernel raised it (siginfo code > 0), so a fault and a later kill(2) of
// the same signal (faulthandler re-raising SIGSEGV) are both kept.
type sigKey struct {
	Pid uint32
	Sig uint32
}

const kernelSig = 0x100

// sigValue is who sent it: the sender's tgid and comm, and the siginfo
// code (> 0: raised by the kernel, such as a fault; <= 0: kill, tkill,
// sigqueue from a process).
// Time (CLOCK_MONOTONIC ns) lets Reason skip what an earlier process with
// the same pid left behind.
type sigValue struct {
	Sender uint32
	Code   int32
	Comm   [16]byte
	Time   uint64
}

// oomValue is what oom:mark_victim gives, in kB (0 where the kernel's
// format lacks the field).
type oomValue struct {
	TotalVM, AnonRSS, FileRSS, ShmemRSS uint64
	Time                                uint64
}

// Map sizes. The kernel preallocates every entry (~80 bytes each: ~2 MB
// in all per Tracer), so they are sized for one runtime's live children,
// not for the machine.
const (
	maxWatched = 16384 // live children watched at once; more go unwatched
	maxSigs    = 4096  // signals recorded and not yet collected (LRU)
	maxOOMs    = 1024  // OOM kills recorded and not yet collected (LRU)
)

// bpfTracer is the loaded state; Close undoes it.
type bpfTracer struct {
	watched, sigs, ooms *ebpf.Map
	progs               []*ebpf.Program
	links               []link.Link
}

// tracefsDirs are where the tracepoints' format files may be.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// formatOffsets reads the field offsets of tracepoint cat/name. It mounts
// tracefs at /sys/kernel/tracing if no tracing directory has the events
// (a root process on a host that did not mount it).
func formatOffsets(cat, name string) (map[string]int16, error) {
	var f *os.File
	var err error
	for attempt := 0; attempt < 2 && f == nil; attempt++ {
		for _, dir := range tracefsDirs {
			if f, err = os.Open(filepath.Join(dir, "events", cat, name, "format")); err == nil {
				break
			}
		}
		if f == nil && attempt == 0 {
			os.MkdirAll(tracefsDirs[0], 0o755)
			syscall.Mount("nodev", tracefsDirs[0], "tracefs", 0, "")
		}
	}
	if f == nil {
		return nil, fmt.Errorf("tracepoint %s/%s: %w", cat, name, err)
	}
	defer f.Close()
	offs := map[string]int16{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "\tfield:int sig;\toffset:8;\tsize:4;\tsigned:1;"
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "field:") {
			continue
		}
		parts := strings.Split(line, ";")
		if len(parts) < 2 {
			continue
		}
		decl := strings.Fields(strings.TrimPrefix(parts[0], "field:"))
		if len(decl) == 0 {
			continue
		}
		field := decl[len(decl)-1]
		if i := strings.IndexByte(field, '['); i >= 0 {
			field = field[:i]
		}
		off, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(parts[1]), "offset:"))
		if err != nil {
			continue
		}
		offs[field] = int16(off)
	}
	return offs, sc.Err()
}

func newMap(name string, typ ebpf.MapType, key, value, entries uint32) (*ebpf.Map, error) {
	return ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: typ, KeySize: key, ValueSize: value,
		MaxEntries: entries})
}

// loadBPF creates the maps, loads the programs and attaches them.
func loadBPF() (t *bpfTracer, err error) {
	sigOff, err := formatOffsets("signal", "signal_generate")
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"sig", "code", "pid", "result"} {
		if _, ok := sigOff[f]; !ok {
			return nil, fmt.Errorf("signal_generate has no field %q", f)
		}
	}
	oomOff, err := formatOffsets("oom", "mark_victim")
	if err != nil {
		return nil, err
	}
	if _, ok := oomOff["pid"]; !ok {
		return nil, errors.New("mark_victim has no field \"pid\"")
	}
	t = &bpfTracer{}
	defer func() {
		if err != nil {
			t.close()
			t = nil
		}
	}()
	// The watched set is a plain hash (the runtime removes each pid; a
	// full map leaves a new child unwatched, never evicts a live one). The
	// records are LRU: one nobody collects (a process killed after it was
	// released) is evicted by newer ones instead of filling the map.
	if t.watched, err = newMap("dmp_watched", ebpf.Hash, 4, 4, maxWatched); err != nil {
		return t, err
	}
	if t.sigs, err = newMap("dmp_sigs", ebpf.LRUHash, 8, 32, maxSigs); err != nil {
		return t, err
	}
	if t.ooms, err = newMap("dmp_ooms", ebpf.LRUHash, 4, 40, maxOOMs); err != nil {
		return t, err
	}
	for _, p := range []struct {
		cat, name string
		insns     asm.Instructions
	}{
		{"signal", "signal_generate", signalProgram(sigOff, t.watched.FD(), t.sigs.FD())},
		{"oom", "mark_victim", oomProgram(oomOff, t.watched.FD(), t.ooms.FD())},
	} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "dmp_" + p.name, Type: ebpf.TracePoint,
			Instructions: p.insns, License: "Dual MIT/GPL"})
		if err != nil {
			return t, fmt.Errorf("load %s: %w", p.name, err)
		}
		t.progs = append(t.progs, prog)
		l, err := link.Tracepoint(p.cat, p.name, prog, nil)
		if err != nil {
			return t, fmt.Errorf("attach %s/%s: %w", p.cat, p.name, err)
		}
		t.links = append(t.links, l)
	}
	return t, nil
}

// watchedCheck is the common head of both programs: the pid in R7 is looked
// up in the watched map; an unwatched one ends the program. One lookup is
// all an unrelated process costs.
func watchedCheck(watchedFD int) asm.Instructions {
	return asm.Instructions{
		asm.StoreMem(asm.RFP, -4, asm.R7, asm.Word),
		asm.LoadMapPtr(asm.R1, watchedFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
	}
}

// signalProgram records, for a signal delivered to a watched process, the
// sender (the current task: kill(2)'s caller, or the target itself for a
// fault the kernel raises, SIGSEGV/SIGBUS) under (target, signal).
func signalProgram(off map[string]int16, watchedFD, sigsFD int) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, off["pid"], asm.Word),
		asm.FnGetCurrentPidTgid.Call(),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.RSh.Imm(asm.R8, 32),       // R8: sender tgid
		asm.Mov.Reg32(asm.R9, asm.R0), // R9: sender thread id
		// A fault signals the faulting thread; its process is the tgid.
		asm.JNE.Reg(asm.R9, asm.R7, "watched"),
		asm.Mov.Reg(asm.R7, asm.R8),
	}
	check := watchedCheck(watchedFD)
	check[0] = check[0].WithSymbol("watched")
	insns = append(insns, check...)
	insns = append(insns,
		// Only a signal that was delivered (result 0): not one ignored,
		// nor a second one already pending, nor one to a dying process.
		asm.LoadMem(asm.R1, asm.R6, off["result"], asm.Word),
		asm.JNE.Imm(asm.R1, 0, "out"),
		asm.StoreMem(asm.RFP, -8, asm.R7, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, off["sig"], asm.Word),
		asm.LoadMem(asm.R2, asm.R6, off["code"], asm.Word),
		asm.StoreMem(asm.RFP, -36, asm.R2, asm.Word),
		asm.JSLE.Imm32(asm.R2, 0, "bysender"),
		asm.Or.Imm(asm.R1, kernelSig),
		asm.StoreMem(asm.RFP, -4, asm.R1, asm.Word).WithSymbol("bysender"),
		asm.StoreMem(asm.RFP, -40, asm.R8, asm.Word),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, -32),
		asm.Mov.Imm(asm.R2, 16),
		asm.FnGetCurrentComm.Call(),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, -16, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, sigsFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -40),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY: the last delivered one
		asm.FnMapUpdateElem.Call(),
	)
	return append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), asm.Return())
}

// oomProgram records the OOM killer's choice of a watched process, with
// the sizes the tracepoint gives (fields the kernel lacks stay 0).
func oomProgram(off map[string]int16, watchedFD, oomsFD int) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, off["pid"], asm.Word),
	}
	insns = append(insns, watchedCheck(watchedFD)...)
	for i, f := range []string{"total_vm", "anon_rss", "file_rss", "shmem_rss"} {
		slot := int16(-48 + 8*i)
		if o, ok := off[f]; ok {
			insns = append(insns, asm.LoadMem(asm.R1, asm.R6, o, asm.DWord),
				asm.StoreMem(asm.RFP, slot, asm.R1, asm.DWord))
		} else {
			insns = append(insns, asm.StoreImm(asm.RFP, slot, 0, asm.DWord))
		}
	}
	insns = append(insns,
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, -16, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, oomsFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -48),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
	)
	return append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), asm.Return())
}

func (t *bpfTracer) watch(pid int) error {
	one := uint32(1)
	return t.watched.Put(uint32(pid), one)
}

// collect takes (and deletes) what the programs recorded for pid and sig
// since `since` (CLOCK_MONOTONIC, the programs' clock); older entries are
// an earlier process's with the same pid.
// Of a signal raised both by the kernel and by a process, the first one
// is the cause.
func (t *bpfTracer) collect(pid int, sig int, since time.Duration) (s *sigValue, o *oomValue) {
	for _, bits := range []uint32{0, kernelSig} {
		var sv sigValue
		k := sigKey{uint32(pid), uint32(sig) | bits}
		if sig > 0 && t.sigs.Lookup(k, &sv) == nil {
			t.sigs.Delete(k)
			if time.Duration(sv.Time) >= since && (s == nil || sv.Time < s.Time) {
				s = &sv
			}
		}
	}
	var ov oomValue
	if t.ooms.Lookup(uint32(pid), &ov) == nil {
		t.ooms.Delete(uint32(pid))
		if time.Duration(ov.Time) >= since {
			o = &ov
		}
	}
	return s, o
}

func (t *bpfTracer) forget(pid int) { t.watched.Delete(uint32(pid)) }

func (t *bpfTracer) close() {
	for _, l := range t.links {
		l.Close()
	}
	for _, p := range t.progs {
		p.Close()
	}
	for _, m := range []*ebpf.Map{t.watched, t.sigs, t.ooms} {
		if m != nil {
			m.Close()
		}
	}
}
