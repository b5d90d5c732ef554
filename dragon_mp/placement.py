"""Where processes run in a multi-node run (a dragon_mp extension).

A multi-node run (``dragon --hostfile hosts prog.py``, or ``dragon prog.py``
inside a Slurm allocation) has nodes 0..N-1; the program itself runs on node
0. Each new process is placed by a Policy:

- ``Policy(host='n2')`` or ``Policy(node=2)``: on that node;
- ``Policy(distribution='roundrobin')`` (the default in multi-node runs, so a
  ``Pool()`` spreads its workers over every node): the next node in turn,
  starting with the starting process's own node, skipping lost nodes and a
  launcher host that is not part of the Slurm allocation;
- ``Policy(distribution='local')``: on the starting process's node.

Give a policy to one process (``Process(target=f, policy=Policy(host='n2'))``)
or make it the default of this process (``set_default_policy``). The
environment variable DRAGON_MP_PLACEMENT=local|roundrobin sets the default
distribution. On one node every policy means "here".
"""

import itertools
import os
import threading

from . import _runtime

__all__ = ['Policy', 'set_default_policy', 'get_default_policy', 'local', 'nodes',
           'this_node']

DISTRIBUTIONS = ('roundrobin', 'local')


class Policy:
    """Where to start a process: a host name, a node index, or a distribution."""

    def __init__(self, host=None, node=None, distribution=None):
        if host is not None and node is not None:
            raise ValueError('give host or node, not both')
        if distribution is not None and distribution not in DISTRIBUTIONS:
            raise ValueError(f'distribution must be one of {DISTRIBUTIONS}, not {distribution!r}')
        if node is not None and (not isinstance(node, int) or node < 0):
            raise ValueError(f'node must be a non-negative int, not {node!r}')
        self.host = host
        self.node = node
        self.distribution = distribution

    def __repr__(self):
        fields = [f'{k}={v!r}' for k, v in vars(self).items() if v is not None]
        return f'Policy({", ".join(fields)})'


_default = None
_lock = threading.Lock()
_turn = None        # round-robin counter of this process
_local = threading.local()      # .policy: an override of this thread (local())
_lost = set()       # nodes a start found gone: round-robin skips them


class local:
    """Context manager: processes this thread starts inside it run on this node."""

    def __enter__(self):
        self._saved = getattr(_local, 'policy', None)
        _local.policy = Policy(distribution='local')
        return self

    def __exit__(self, *exc):
        _local.policy = self._saved


def set_default_policy(policy):
    """Make `policy` (a Policy or None) the default placement of this process's new processes."""
    global _default
    if policy is not None and not isinstance(policy, Policy):
        raise TypeError('policy must be a dragon_mp.placement.Policy or None')
    _default = policy


def get_default_policy():
    if _default is not None:
        return _default
    return Policy(distribution=os.environ.get('DRAGON_MP_PLACEMENT') or 'roundrobin')


def nodes():
    """Host names of the run's nodes, by node index."""
    return _runtime.node_names()


def this_node():
    """The node index of this process."""
    return _runtime.node_index()


def start(policy, start_on):
    """start_on(node) on the node `policy` picks; round-robin skips (and
    remembers) nodes found lost, so a Pool refilling itself after a node was
    lost starts its new workers on the nodes that are left."""
    while True:
        node = choose(policy)
        try:
            return start_on(node)
        except ConnectionError:
            if not _round_robin(policy) or node == this_node():
                raise
            with _lock:
                _lost.add(node)
                if len(_lost) >= len(nodes()) - 1:
                    _lost.clear()       # nothing but this node left: try everything again next time
                    raise


def _round_robin(policy):
    policy = policy or getattr(_local, 'policy', None) or get_default_policy()
    return policy.node is None and policy.host is None and policy.distribution != 'local'


def choose(policy):
    """The node index a new process with `policy` (None: the default) goes to."""
    global _turn
    names = nodes()
    here = this_node()
    if len(names) <= 1:
        return here
    policy = policy or getattr(_local, 'policy', None) or get_default_policy()
    if policy.node is not None:
        if policy.node >= len(names):
            raise ValueError(f'node {policy.node} does not exist: the run has {len(names)} nodes')
        return policy.node
    if policy.host is not None:
        for i, name in enumerate(names):
            if name == policy.host or name.split('.')[0] == policy.host:
                return i
        raise ValueError(f'host {policy.host!r} is not a node of this run: {names}')
    if (policy.distribution or 'roundrobin') == 'local':
        return here
    cpus = _runtime.node_cpus() or []
    with _lock:
        if _turn is None:
            _turn = itertools.count(here)
        for _ in range(len(names)):
            node = next(_turn) % len(names)
            # A node without CPUs for the run (the launcher's host outside a
            # Slurm allocation) gets no processes by turn.
            if node not in _lost and (node >= len(cpus) or cpus[node] > 0):
                return node
        return here
