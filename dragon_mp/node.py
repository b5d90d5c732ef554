"""A node's part of a multi-node run: `python -m dragon_mp.node --node K`.

The launcher starts one on every node but its own (over ssh, srun or an exec
template) and talks to it over the session's standard streams:

1. stdin, one JSON line: the run id, the head's IP and the node identities
   (certificate and key signed by the run's CA); the node index comes from
   --node, or from SLURM_PROCID + 1 with --node slurm.
2. The node creates its part of the run (its own pool, run id
   "<run>n<K>", a reaper), starts its agent on a UDP port and answers
   READY with its address and CPU count on stdout.
3. stdin, one JSON line: where every node's agent listens. The node answers
   PEERED; from then on the launcher may place processes here. They run as
   children of this process, with its stdout and stderr, which the session
   carries back to the launcher.
4. The node ends its part of the run (kills its processes, removes its shared
   memory) when stdin closes or says "stop", on SIGTERM/SIGHUP, or when it
   loses the head node.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading

from . import _core, _runtime

MARK = '@@dragon_mp'
HEAD_CHECK = 0.25   # seconds between looks for a lost head


def say(word, **fields):
    sys.stdout.write(f'{MARK} {word} {json.dumps(fields)}\n')
    sys.stdout.flush()


def local_ip(head_ip):
    """This host's address on the route to the head (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((head_ip, 9))
        return s.getsockname()[0]


def node_index(arg):
    if arg == 'slurm':
        return int(os.environ['SLURM_PROCID']) + 1
    return int(arg)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m dragon_mp.node')
    parser.add_argument('--node', required=True, help='node index, or "slurm"')
    parser.add_argument('--port', type=int, default=0, help='UDP port of the agent (0: any)')
    ns = parser.parse_args(argv)
    node = node_index(ns.node)
    config = json.loads(sys.stdin.readline())
    runid = f"{config['run']}n{node}"
    identity = config['identities'][str(node)]

    for key, value in config.get('env', {}).items():
        os.environ[key] = value
    os.environ[_runtime.ENV_NODE] = str(node)
    os.environ.pop(_runtime.ENV_RUN, None)
    _runtime._create(runid, node)         # sets DRAGON_MP_RUN, starts the reaper
    gc = _core.gocore()
    env = [f'{_runtime.ENV_RUN}={runid}', f'{_runtime.ENV_NODE}={node}']
    ip = local_ip(config['head'])
    addr = _core.call(gc.AgentStart, json.dumps(identity), f'{ip}:{ns.port}', json.dumps(env))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        say('READY', node=node, addr=addr, cpus=len(os.sched_getaffinity(0)),
            host=socket.gethostname())
        peers = json.loads(sys.stdin.readline() or 'null')
        if peers is None:
            return 1
        _core.call(gc.AgentSetPeers, json.dumps(peers['peers']))
        for key, value in peers.get('env', {}).items():
            os.environ[key] = value
        say('PEERED', node=node)

        def read_stdin():
            for line in sys.stdin:
                if line.strip() == 'stop':
                    break
            stop.set()
        threading.Thread(target=read_stdin, daemon=True).start()
        while not stop.wait(HEAD_CHECK):
            lost = json.loads(_core.call(gc.AgentLost))
            if '0' in lost:
                print(f'dragon_mp node {node}: lost the head node: {lost["0"]}; ending',
                      file=sys.stderr, flush=True)
                break
        return 0
    finally:
        # Processes first (they may be blocked on other nodes), then the agent, then memory.
        try:
            gc.KillRun(runid, 500)
        finally:
            _core.call(gc.AgentStop)
            _runtime.shutdown()


if __name__ == '__main__':
    sys.exit(main())
