package pyext

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/dragon-mp/dragon_mp/gocore/agent"
	"github.com/dragon-mp/dragon_mp/gocore/transport"
)

// The node agent, for the process that runs it (the launcher on node 0,
// dragon_mp.node elsewhere): gopy-bound control calls. The agent serves this
// node's processes and talks to the other nodes' agents over QUIC.

var (
	agentMu   sync.Mutex
	nodeAgent *agent.Agent
	nodeMesh  *transport.Mesh
)

// RunIdentities makes a CA for a run of n nodes and returns the JSON list of
// the nodes' identities (certificate and key each, signed by the run's CA).
func RunIdentities(runid string, n int64) (s string, err error) {
	defer recovered(&err)
	if n < 1 || n > 1<<15 {
		return "", pyErr(errInvalid)
	}
	ca, err := transport.NewCA(runid)
	if err != nil {
		return "", pyErr(err)
	}
	ids := make([]json.RawMessage, n)
	for i := range ids {
		id, err := ca.Issue(uint16(i))
		if err != nil {
			return "", pyErr(err)
		}
		if ids[i], err = id.Marshal(); err != nil {
			return "", pyErr(err)
		}
	}
	b, err := json.Marshal(ids)
	return string(b), pyErr(err)
}

// AgentStart starts this node's agent: it serves the node's processes and
// listens for the other nodes on listen (UDP "ip:port"). env lists the
// "KEY=value" entries processes started here for other nodes get (JSON).
// It returns the address the agent listens on.
func AgentStart(identityJSON, listen, envJSON string) (addr string, err error) {
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return "", pyErr(err)
	}
	id, err := transport.ParseIdentity([]byte(identityJSON))
	if err != nil {
		return "", pyErr(fmt.Errorf("%w: identity: %v", errInvalid, err))
	}
	if id.Node != r.Node {
		return "", pyErr(fmt.Errorf("%w: identity of node %d on node %d", errInvalid, id.Node, r.Node))
	}
	var env []string
	if err := json.Unmarshal([]byte(envJSON), &env); err != nil {
		return "", pyErr(fmt.Errorf("%w: env: %v", errInvalid, err))
	}
	agentMu.Lock()
	defer agentMu.Unlock()
	if nodeAgent != nil {
		return "", pyErr(errors.New("the agent is already running"))
	}
	spawnEnv = env
	a := agent.New(r.Node, execute)
	if err := a.Serve(agent.SocketName(r.ID)); err != nil {
		return "", pyErr(err)
	}
	m, err := transport.Start(transport.Config{
		Identity: id, Listen: listen,
		Deliver: a.Deliver, PeerLost: a.PeerLost,
	})
	if err != nil {
		a.Close()
		return "", pyErr(err)
	}
	a.SetMesh(m)
	nodeAgent, nodeMesh = a, m
	return m.Addr().String(), nil
}

// AgentSetPeers tells the agent where the other nodes listen: JSON
// {"<node>": "ip:port", ...}.
func AgentSetPeers(peersJSON string) (err error) {
	defer recovered(&err)
	var raw map[string]string
	if err := json.Unmarshal([]byte(peersJSON), &raw); err != nil {
		return pyErr(fmt.Errorf("%w: peers: %v", errInvalid, err))
	}
	peers := make(map[uint16]string, len(raw))
	for k, v := range raw {
		n, err := strconv.ParseUint(k, 10, 16)
		if err != nil {
			return pyErr(fmt.Errorf("%w: peer node %q", errInvalid, k))
		}
		peers[uint16(n)] = v
	}
	agentMu.Lock()
	m := nodeMesh
	agentMu.Unlock()
	if m == nil {
		return pyErr(errors.New("the agent is not running"))
	}
	m.SetPeers(peers)
	return nil
}

// AgentLost is the JSON map {"<node>": "why"} of the nodes lost so far.
func AgentLost() (s string, err error) {
	defer recovered(&err)
	agentMu.Lock()
	a := nodeAgent
	agentMu.Unlock()
	out := map[string]string{}
	if a != nil {
		for n, e := range a.Lost() {
			out[strconv.Itoa(int(n))] = e.Error()
		}
	}
	b, _ := json.Marshal(out)
	return string(b), nil
}

// AgentStop says goodbye to the other nodes and stops the agent.
func AgentStop() (err error) {
	defer recovered(&err)
	agentMu.Lock()
	a, m := nodeAgent, nodeMesh
	nodeAgent, nodeMesh = nil, nil
	agentMu.Unlock()
	if m != nil {
		err = m.Close()
	}
	if a != nil {
		a.Close()
	}
	return pyErr(err)
}
