package runtime

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/ledger"
	"github.com/dragon-mp/dragon_mp/gocore/pool"
	"github.com/dragon-mp/dragon_mp/gocore/proc"
)

// SegmentPrefix starts the name of every shared-memory segment of every run.
const SegmentPrefix = "dragon_mp."

// EnvRun is the environment variable that carries a process's run id.
const EnvRun = "DRAGON_MP_RUN"

// EnvNodes is the environment variable that lists the host names of a
// multi-node run's nodes, by index, separated by commas.
const EnvNodes = "DRAGON_MP_NODES"

// NodeName is node's host name, from the run's environment ("" if unknown).
func NodeName(node uint16) string {
	names := strings.Split(os.Getenv(EnvNodes), ",")
	if int(node) < len(names) {
		return names[node]
	}
	return ""
}

// User words of the pool header owned by this package.
const (
	wordHeadPid = iota
	wordHeadStart
	wordNode      // the node index of the run's pool (0 on one node)
	wordLostMarks // pool offset of the lost-node marks (0: none; see nodes.go)
	wordLedgers   // pool offset of the ledger directory (0: none yet; see ledger.go)
	wordGen       // objects made so far: their generations (see Address)
)

var (
	// ErrBadID reports a run id that cannot name segments.
	ErrBadID = errors.New("runtime: invalid run id")
	// ErrRemote reports an address on another node: callers route it to the
	// node's agent (pyext) instead.
	ErrRemote = errors.New("runtime: object lives on another node")
)

// Runtime is one process's view of a run. The zero value is not usable; get
// one from Create or Attach.
type Runtime struct {
	ID   string
	Head bool // this process created the run and destroys it
	Node uint16
	Pool *pool.Pool

	mu       sync.Mutex
	channels map[Address]*channel.Channel // attached channels, by address
	ledgers  *ledger.Directory            // see Ledgers
}

// SegmentName is the shm name of a run's segment `what`.
func SegmentName(id, what string) string { return SegmentPrefix + id + "." + what }

func checkID(id string) error {
	if id == "" || strings.ContainsAny(id, "/.\x00") || len(id) > 100 {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	return nil
}

// Create makes a new run with this process as its head. reserve is the pool's
// virtual size (0: pool.DefaultReserve); memory is committed as it is used.
func Create(id string, reserve uint64) (*Runtime, error) { return CreateNode(id, 0, reserve) }

// CreateNode is Create for node `node` of a multi-node run: addresses of its
// objects carry the node index. Each node's part of a run has its own id.
func CreateNode(id string, node uint16, reserve uint64) (*Runtime, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if reserve == 0 {
		reserve = pool.DefaultReserve
	}
	if reserve > MaxOffset/2 { // the segment is twice the reservation
		return nil, fmt.Errorf("runtime: a pool reservation of %d bytes is above the %d that addresses can name",
			reserve, uint64(MaxOffset/2))
	}
	p, err := pool.Create(SegmentName(id, "pool"), reserve)
	if err != nil {
		return nil, err
	}
	words := p.UserWords()
	words[wordHeadPid] = uint64(os.Getpid())
	if start, err := proc.StartTime(os.Getpid()); err == nil {
		words[wordHeadStart] = start
	}
	words[wordNode] = uint64(node)
	return newRuntime(id, true, p), nil
}

// Attach joins the run id created by another process.
func Attach(id string) (*Runtime, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	p, err := pool.Open(SegmentName(id, "pool"))
	if err != nil {
		return nil, fmt.Errorf("runtime: attach to run %s: %w", id, err)
	}
	return newRuntime(id, false, p), nil
}

func newRuntime(id string, head bool, p *pool.Pool) *Runtime {
	return &Runtime{ID: id, Head: head, Node: uint16(p.UserWords()[wordNode]), Pool: p,
		channels: make(map[Address]*channel.Channel)}
}

// HeadPid is the pid of the run's head process.
func (r *Runtime) HeadPid() int { return int(r.Pool.UserWords()[wordHeadPid]) }

// Close detaches this process from the run (unmaps the pool).
func (r *Runtime) Close() error {
	r.mu.Lock()
	r.channels = make(map[Address]*channel.Channel)
	r.mu.Unlock()
	return r.Pool.Close()
}

// Destroy ends the run: unmaps and unlinks its segments. Head only.
func (r *Runtime) Destroy() error {
	r.mu.Lock()
	r.channels = make(map[Address]*channel.Channel)
	r.mu.Unlock()
	return r.Pool.Destroy()
}

// local checks that a lives on this node and returns its offset.
func (r *Runtime) local(a Address) (uint64, error) {
	if a.Node() != r.Node {
		return 0, fmt.Errorf("%w: node %d", ErrRemote, a.Node())
	}
	return a.Offset(), nil
}
