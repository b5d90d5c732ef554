"""A node's part of a multi-node run: `python -m dragon_mp.node --node K`.

The launcher starts one on every node but its own (over ssh, srun or an exec
template) and talks to it over the session's standard streams:

1. stdin, one JSON line: the run id, the head's IP and the node identities
   (certificate and key signed by the run's CA); the node index comes from
   --node, or with --node slurm from the Slurm node name (SLURMD_NODENAME)
   looked up in the line's "slurm_nodes".
2. The node creates its part of the run (its own pool, run id
   "<run>n<K>", a reaper), starts its agent (the QUIC mesh on a UDP port,
   data connections on a TCP port) and answers READY with its addresses
   and CPU count on stdout.
3. stdin, one JSON line: where every node's agent listens. The node answers
   PEERED; from then on the launcher may place processes here. They run as
   children of this process, with its stdout and stderr, which the session
   carries back to the launcher.
4. The node ends its part of the run (kills its processes, removes its shared
   memory) when stdin closes or says "stop", on SIGTERM/SIGHUP, or when it
   loses the head node. "signal N" on stdin sends signal N to its processes
   (the launcher passes a terminal's Ctrl-C on this way).

A node whose configuration names other hosts ("launch": its share of the
launch tree, see dragon_mp.nodes) starts them first, relays every line of
stdin to them and their output up, reports a session of theirs that ends
(ENDED), and ends its part only after theirs.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading

from . import _core, _runtime, reaper

__all__ = ['main']

MARK = '@@dragon_mp'
HEAD_CHECK = 0.25   # seconds between looks for a lost head


def say(word, **fields):
    from .nodes import write_line
    write_line(sys.stdout.buffer, f'{MARK} {word} {json.dumps(fields)}\n'.encode())


def local_ip(head_ip):
    """This host's address on the route to the head (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((head_ip, 9))
        return s.getsockname()[0]


def node_index(arg, config):
    """--node K, or with --node slurm this Slurm node's index in the launcher's
    `slurm_nodes` (srun numbers tasks in Slurm's node order, not the launcher's);
    without that map, SLURM_PROCID + 1."""
    if arg == 'slurm':
        name = os.environ.get('SLURMD_NODENAME')
        bynames = config.get('slurm_nodes') or {}
        if name in bynames:
            return int(bynames[name])
        if bynames:
            raise SystemExit(f'dragon_mp node: Slurm node {name!r} is not one of '
                             f'{sorted(bynames)}')
        return int(os.environ['SLURM_PROCID']) + 1
    return int(arg)


def cpu_count():
    """CPUs for the run here: this process's affinity, in a Slurm step at most the
    CPUs the step has on this node."""
    cpus = len(os.sched_getaffinity(0))
    slurm = os.environ.get('SLURM_CPUS_ON_NODE', '')
    return min(cpus, int(slurm)) if slurm.isdigit() and int(slurm) > 0 else cpus


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m dragon_mp.node')
    parser.add_argument('--node', required=True, help='node index, or "slurm"')
    parser.add_argument('--port', type=int, default=0, help='UDP port of the agent (0: any)')
    parser.add_argument('--run', help='the run id (informative: the configuration carries it)')
    ns = parser.parse_args(argv)
    config = json.loads(sys.stdin.readline())
    node = node_index(ns.node, config)
    runid = f"{config['run']}n{node}"
    identity = config['identities'][str(node)]
    # The nodes below this one in the launch tree start first: their bring-up
    # overlaps ours.
    relay = Relay(node, config)

    for key, value in config.get('env', {}).items():
        os.environ[key] = value
    os.environ[_runtime.ENV_NODE] = str(node)
    os.environ.pop(_runtime.ENV_RUN, None)
    _runtime._create(runid, node)         # sets DRAGON_MP_RUN, starts the reaper
    gc = _core.gocore()
    env = [f'{_runtime.ENV_RUN}={runid}', f'{_runtime.ENV_NODE}={node}']
    ip = local_ip(config['head'])
    addr = json.loads(_core.call(gc.AgentStart, json.dumps(identity), f'{ip}:{ns.port}',
                                 json.dumps(env)))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        say('READY', node=node, addr=addr, cpus=cpu_count(), host=socket.gethostname())
        line = sys.stdin.readline()
        relay.send_line(line)
        peers = json.loads(line or 'null')
        if peers is None:
            return 1
        _core.call(gc.AgentSetPeers, json.dumps(peers['peers']))
        # The node that started this one carries its launch session: losing
        # it (cut off, say) leaves this node without stdin or stdout, so it
        # ends as it does when it loses the head.
        parent = int((config.get('launch') or {}).get('parent', 0))
        if parent:
            _core.call(gc.AgentWatch, parent)
        for key, value in peers.get('env', {}).items():
            os.environ[key] = value
        say('PEERED', node=node)

        def read_stdin():
            for line in sys.stdin:
                word = line.split()
                if word[:1] == ['stop']:
                    break
                if word[:1] == ['signal'] and len(word) == 2 and word[1].isdigit():
                    # The launcher's terminal sent Ctrl-C: it reaches this node's
                    # processes too, as it reaches a one-node program's children.
                    relay.send_line(line)
                    gc.SignalRun(runid, int(word[1]))
            stop.set()
        threading.Thread(target=read_stdin, daemon=True).start()
        while not stop.wait(HEAD_CHECK):
            lost = json.loads(_core.call(gc.AgentLost))
            for n, what in (('0', 'the head node'), (str(parent), 'the node that started it')):
                if n in lost:
                    print(f'dragon_mp node {node}: lost {what} (node {n}): {lost[n]}; ending',
                          file=sys.stderr, flush=True)
                    break
            else:
                continue
            break
        return 0
    finally:
        relay.stop()            # the nodes below end their parts meanwhile
        # Processes first (they may be blocked on other nodes), then the agent, then memory.
        # The segment's name goes at once (the mapping stays valid until shutdown): saying
        # goodbye to a dead head can take seconds, and a batch system ending the node (srun's
        # step cancelled: SIGTERM to every process of the step, the reaper included, SIGKILL
        # KillWait seconds later) may not wait that long.
        try:
            gc.KillRun(runid, 500)
        finally:
            reaper.unlink_segments(runid)
            _core.call(gc.AgentStop)
            relay.finish()
            _runtime.shutdown()


class Relay:
    """This node's share of the launch tree: the sessions of the nodes it
    starts, fed with its stdin's lines, watched for their end."""

    # How long the nodes below get to end their parts after ours (the
    # launcher gives a session 15 s).
    FINISH = 10.0

    def __init__(self, node, config):
        from . import nodes
        self.node = node
        launch = config.get('launch') or {}
        below = sorted(int(k) for k in launch.get('hosts', {}) if int(k) != node)
        self.sessions = []
        if below:
            base = {k: v for k, v in config.items() if k not in ('identities', 'launch')}
            self.sessions = nodes.start_subtree(launch, config['run'], base, config['identities'],
                                                launch['hosts'], below, node, relay=True)
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        """Report each session that ends (its nodes are gone for the run)."""
        left = list(self.sessions)
        while left:
            for s in list(left):
                if s.poll() is not None:
                    left.remove(s)
                    say('ENDED', relay=self.node, nodes=s.nodes, status=s.exited)
            threading.Event().wait(HEAD_CHECK)

    def send_line(self, line):
        for s in self.sessions:
            s._write(line.encode() if isinstance(line, str) else line)

    def stop(self):
        for s in self.sessions:
            s.stop()

    def finish(self):
        waiters = [threading.Thread(target=s.finish, args=(self.FINISH,), daemon=True)
                   for s in self.sessions]
        for t in waiters:
            t.start()
        for t in waiters:
            t.join()


if __name__ == '__main__':
    sys.exit(main())
