package pyext

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/dragon-mp/dragon_mp/gocore/agent"
	"github.com/dragon-mp/dragon_mp/gocore/transport"
)

// The node agent, for the process that runs it (the launcher on node 0,
// dragon_mp.node elsewhere): gopy-bound control calls. The agent serves this
// node's processes and the other nodes' processes' operations here, and
// watches the other nodes over the QUIC mesh.

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

// agentAddrs is where an agent listens: the mesh (UDP) and the data
// connections (TCP).
type agentAddrs struct {
	Mesh string `json:"mesh"`
	Data string `json:"data"`
}

// AgentStart starts this node's agent: the mesh listens on listen (UDP
// "ip:port"), the data connections on the same IP (TCP, any port). env
// lists the "KEY=value" entries processes started here for other nodes get
// (JSON). It returns the addresses as JSON {"mesh": ..., "data": ...}.
func AgentStart(identityJSON, listen, envJSON string) (addrs string, err error) {
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
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", pyErr(fmt.Errorf("%w: listen address: %v", errInvalid, err))
	}
	agentMu.Lock()
	defer agentMu.Unlock()
	if nodeAgent != nil {
		return "", pyErr(errors.New("the agent is already running"))
	}
	if err := r.MakeNodeMarks(); err != nil {
		return "", pyErr(err)
	}
	spawnEnv = env
	a, err := agent.New(agent.Config{Node: r.Node, Identity: id, Exec: executor{},
		MarkLost: func(n uint16) { r.MarkNodeLost(n) }})
	if err != nil {
		return "", pyErr(err)
	}
	if err := a.ServeLocal(agent.SocketName(r.ID)); err != nil {
		return "", pyErr(err)
	}
	data, err := a.ListenData(net.JoinHostPort(host, "0"))
	if err != nil {
		a.Close()
		return "", pyErr(err)
	}
	m, err := transport.Start(transport.Config{Identity: id, Listen: listen, PeerLost: a.PeerLost})
	if err != nil {
		a.Close()
		return "", pyErr(err)
	}
	a.SetMesh(m)
	nodeAgent, nodeMesh = a, m
	b, _ := json.Marshal(agentAddrs{Mesh: m.Addr().String(), Data: data})
	return string(b), nil
}

// AgentSetPeers tells the agent where the other nodes listen: JSON
// {"<node>": {"mesh": "ip:port", "data": "ip:port"}, ...}. From then on the
// head (node 0) watches every node and every node watches the head, so a
// lost node is noticed even where no process uses it.
func AgentSetPeers(peersJSON string) (err error) {
	defer recovered(&err)
	var raw map[string]agentAddrs
	if err := json.Unmarshal([]byte(peersJSON), &raw); err != nil {
		return pyErr(fmt.Errorf("%w: peers: %v", errInvalid, err))
	}
	mesh := make(map[uint16]string, len(raw))
	data := make(map[uint16]string, len(raw))
	for k, v := range raw {
		n, err := strconv.ParseUint(k, 10, 16)
		if err != nil {
			return pyErr(fmt.Errorf("%w: peer node %q", errInvalid, k))
		}
		mesh[uint16(n)], data[uint16(n)] = v.Mesh, v.Data
	}
	agentMu.Lock()
	a, m := nodeAgent, nodeMesh
	agentMu.Unlock()
	if m == nil {
		return pyErr(errors.New("the agent is not running"))
	}
	m.SetPeers(mesh)
	a.SetPeers(data)
	for n := range mesh {
		if n != m.Node() && (m.Node() == 0 || n == 0) {
			if err := m.Watch(n); err != nil && errors.Is(err, transport.ErrPeerLost) {
				a.PeerLost(n, err)
			}
		}
	}
	return nil
}

// AgentWatch has the agent watch node too (AgentSetPeers first): a node
// watches the node that started it in the launch tree, whose loss ends it.
func AgentWatch(node int64) (err error) {
	defer recovered(&err)
	agentMu.Lock()
	a, m := nodeAgent, nodeMesh
	agentMu.Unlock()
	if m == nil {
		return pyErr(errors.New("the agent is not running"))
	}
	if node < 0 || node > 0xffff || uint16(node) == m.Node() {
		return pyErr(fmt.Errorf("%w: node %d", errInvalid, node))
	}
	if err := m.Watch(uint16(node)); err != nil {
		if !errors.Is(err, transport.ErrPeerLost) {
			return pyErr(err)
		}
		a.PeerLost(uint16(node), err)
	}
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
	if a != nil {
		a.Close()
	}
	if m != nil {
		err = m.Close()
	}
	return pyErr(err)
}
