package pyext

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/agent"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// Remote objects: an entry point whose address names another node sends the
// operation over this process's connection to that node's agent
// (gocore/agent), which runs it with execute (remote_exec.go): the same
// entry point, on an address that is local there. Blocking operations are
// sliced on the requester side so that an abandoned one ends on the owner
// within remoteSlice.

const remoteSlice = remoteop.Slice

// errNodeLost reports a request whose owner node is gone (ConnectionError in Python).
var errNodeLost = errors.New("node lost")

var (
	clientMu sync.Mutex
	client   *agent.Client // this process's access to the other nodes
)

// isRemote reports whether addr names an object on another node.
func isRemote(addr int64) bool {
	r := rt.Load()
	return r != nil && addr != 0 && runtime.Address(addr).Node() != r.Node
}

func agentClient() (*agent.Client, error) {
	r, err := current()
	if err != nil {
		return nil, err
	}
	clientMu.Lock()
	defer clientMu.Unlock()
	if client == nil {
		client = agent.NewClient(agent.ClientConfig{
			Control: agent.SocketName(r.ID),
			Lost:    r.NodeLost,
			Name:    runtime.NodeName,
		})
	}
	return client, nil
}

// clientErr turns what the agent client returned into what codeOf maps to
// the exception stdlib would raise.
func clientErr(err error) error {
	var re *agent.RemoteError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return &remoteError{code: int(re.Code), msg: re.Msg}
	case errors.Is(err, agent.ErrNoAgent):
		if strings.Contains(os.Getenv(runtime.EnvNodes), ",") {
			return fmt.Errorf("%w: this node's agent is gone", errNodeLost)
		}
		// No agent: a single-node run, where another node's address is a forgery.
		return fmt.Errorf("%w, and this run has no other nodes", runtime.ErrRemote)
	case errors.Is(err, agent.ErrNoSuchNode):
		return fmt.Errorf("%w: %v", runtime.ErrRemote, err)
	}
	return err
}

// remoteError is an error reply: the owner's code and message.
type remoteError struct {
	code int
	msg  string
}

func (e *remoteError) Error() string { return e.msg }

// remoteCall runs op on the node that addr names and returns the reply.
func remoteCall(op uint16, addr int64, timeout time.Duration, payload []byte, args ...int64) (wire.Frame, error) {
	var parts [][]byte
	if len(payload) > 0 {
		parts = [][]byte{payload}
	}
	return remoteCallParts(op, addr, timeout, parts, nil, args...)
}

// remoteCallParts is remoteCall with the payload in parts and, if sink is
// not nil, the reply's payload written where sink says.
func remoteCallParts(op uint16, addr int64, timeout time.Duration, parts [][]byte,
	sink func(int) ([]byte, error), args ...int64) (wire.Frame, error) {
	defer inside()()
	c, err := agentClient()
	if err != nil {
		return wire.Frame{}, err
	}
	rep, err := c.Call(wire.Frame{Op: op, Addr: uint64(addr), Timeout: int64(timeout), Args: args}, parts, sink)
	return rep, clientErr(err)
}

// remotePost posts op on the node that addr names: no reply is awaited (see
// gocore/agent); only for operations that cannot block.
func remotePost(op uint16, addr int64, parts [][]byte) error {
	defer inside()()
	c, err := agentClient()
	if err != nil {
		return err
	}
	return clientErr(c.Post(wire.Frame{Op: op, Addr: uint64(addr)}, parts))
}

// RemoteSync waits until every operation this process posted to addr's node
// has run there (Queue.join_thread); addr 0: to every node (a process's
// exit). The posts that failed are reported (the first one's error, with a
// count of the others).
func RemoteSync(addr int64) (err error) {
	defer recovered(&err)
	clientMu.Lock()
	c := client
	clientMu.Unlock()
	if c == nil {
		return nil // nothing was ever posted
	}
	if addr == 0 {
		return pyErr(clientErr(c.SyncAll()))
	}
	if !isRemote(addr) {
		return nil
	}
	return pyErr(clientErr(c.Sync(runtime.Address(addr).Node())))
}

// result0 is the first result of a reply (0 if none).
func result0(f wire.Frame) int64 {
	if len(f.Args) > 0 {
		return f.Args[0]
	}
	return 0
}

// remoteInt is remoteCall for a gopy-bound entry point returning an int.
func remoteInt(op uint16, addr int64, args ...int64) (int64, error) {
	rep, err := remoteCall(op, addr, 0, nil, args...)
	if err != nil {
		return 0, pyErr(err)
	}
	return result0(rep), nil
}

// remoteErr is remoteCall for a gopy-bound entry point returning only an error.
func remoteErr(op uint16, addr int64, args ...int64) error {
	_, err := remoteInt(op, addr, args...)
	return err
}

// remoteWait runs a blocking op (result 1 done, 0 timed out) in slices of
// remoteSlice, as an //export entry point returns it.
func remoteWait(op uint16, addr int64, timeout time.Duration, args ...int64) int64 {
	var v int64
	err := remoteop.Sliced(timeout, func(t time.Duration) (bool, error) {
		rep, err := remoteCall(op, addr, t, nil, args...)
		v = result0(rep)
		return err == nil && v == 0, err
	})
	if err != nil {
		return cCode(err)
	}
	return v
}

// remoteRC is remoteCall for an //export entry point: its result, or a negative code.
func remoteRC(op uint16, addr int64, args ...int64) int64 {
	rep, err := remoteCall(op, addr, 0, nil, args...)
	if err != nil {
		return cCode(err)
	}
	return result0(rep)
}

// codeOfReply parses the code of a gopy-style error ("E<code>: message").
func codeOfReply(err error) (int32, string) {
	s := err.Error()
	if head, msg, ok := strings.Cut(s, ": "); ok && strings.HasPrefix(head, "E") {
		if n, e := strconv.Atoi(head[1:]); e == nil {
			return int32(n), msg
		}
	}
	return int32(codeOf(err)), s
}
