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
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// Remote objects: an entry point whose address names another node sends the
// operation to this node's agent (gocore/agent), which has the owner node's
// agent run it with execute (remote_exec.go): the same entry point, on an
// address that is local there. Blocking operations are sliced on the
// requester side so that an abandoned request ends on the owner within
// remoteSlice.

const remoteSlice = time.Second

// errNodeLost reports a request whose owner node is gone (ConnectionError in Python).
var errNodeLost = errors.New("node lost")

// remoteError is an error reply: the owner's code and message.
type remoteError struct {
	code int
	msg  string
}

func (e *remoteError) Error() string { return e.msg }

var (
	clientMu sync.Mutex
	client   *agent.Client // this process's connection to its node's agent
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
		c, err := agent.Dial(agent.SocketName(r.ID))
		if err != nil {
			if strings.Contains(os.Getenv("DRAGON_MP_NODES"), ",") {
				return nil, fmt.Errorf("%w: this node's agent is gone: %v", errNodeLost, err)
			}
			// No agent: a single-node run, where another node's address is a forgery.
			return nil, fmt.Errorf("%w, and this run has no other nodes", runtime.ErrRemote)
		}
		client = c
	}
	return client, nil
}

func dropClient(c *agent.Client) {
	clientMu.Lock()
	if client == c {
		client = nil
	}
	clientMu.Unlock()
	c.Close()
}

// remoteCall runs op on the node that addr names and returns the reply.
func remoteCall(op uint16, addr int64, timeout time.Duration, payload []byte, args ...int64) (wire.Frame, error) {
	c, err := agentClient()
	if err != nil {
		return wire.Frame{}, err
	}
	rep, err := c.Call(wire.Frame{Op: op, Addr: uint64(addr), Timeout: int64(timeout), Args: args, Payload: payload})
	if err != nil {
		dropClient(c)
		return wire.Frame{}, fmt.Errorf("%w: %v", errNodeLost, err)
	}
	switch {
	case rep.Code == agent.CodeNoSuchNode:
		return rep, fmt.Errorf("%w: %s", runtime.ErrRemote, rep.Payload)
	case rep.Code == agent.CodePeerLost:
		return rep, fmt.Errorf("%w: %s", errNodeLost, rep.Payload)
	case rep.Code != 0:
		return rep, &remoteError{code: int(rep.Code), msg: string(rep.Payload)}
	}
	return rep, nil
}

// remotePost posts op on the node that addr names: no reply is awaited (see
// gocore/agent); only for operations that cannot block or fail on a valid
// object.
func remotePost(op uint16, addr int64, payload []byte) error {
	c, err := agentClient()
	if err != nil {
		return err
	}
	if err := c.Post(wire.Frame{Op: op, Addr: uint64(addr), Payload: payload}); err != nil {
		dropClient(c)
		return fmt.Errorf("%w: %v", errNodeLost, err)
	}
	return nil
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
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		t := remoteSlice
		if timeout >= 0 {
			t = min(t, max(time.Until(deadline), 0))
			if timeout == 0 {
				t = 0
			}
		}
		rep, err := remoteCall(op, addr, t, nil, args...)
		if err != nil {
			return cCode(err)
		}
		if v := result0(rep); v != 0 || timeout == 0 || (timeout > 0 && !time.Now().Before(deadline)) {
			return v
		}
	}
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
