"""The same program on every node of a cluster.

    dragon --hostfile hosts.txt examples/cluster.py     (hosts.txt: one host per line)
    dragon examples/cluster.py                          (inside a Slurm allocation)
    python examples/cluster.py                          (one node: everything runs here)

A Pool spreads over every node, a process is placed on the last node, and a
Queue and a Lock made here are used from there.
"""

import socket

import dragon_mp as multiprocessing
from dragon_mp.placement import Policy, nodes


def where(x):
    return socket.gethostname(), x * x


def report(q, lock, n):
    with lock:                                  # a Lock of node 0, taken on another node
        q.put((socket.gethostname(), sum(range(n))))


if __name__ == "__main__":
    hosts = nodes()
    print("nodes:", hosts, "cpus:", multiprocessing.cpu_count())
    with multiprocessing.Pool() as pool:
        results = pool.map(where, range(4 * multiprocessing.cpu_count()))
    print("squares:", [v for _, v in results][:8], "...")
    print("pool workers ran on:", sorted({h for h, _ in results}))
    q, lock = multiprocessing.Queue(), multiprocessing.Lock()
    p = multiprocessing.Process(target=report, args=(q, lock, 1000),
                                policy=Policy(node=len(hosts) - 1))
    p.start()
    print("from the last node:", q.get(timeout=60))
    p.join()
