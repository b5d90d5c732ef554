"""A ProcessGroup of 8 C workers that restarts each after a few tasks (docs/native.md, docs/c_api.md).

Builds examples/worker.c against the C API, puts the tasks into a Queue, and starts 8 workers with
restart=True: each takes 5 tasks, answers on a result Queue and exits; the group starts another in its
place until every answer is in, then stops the group. On one node: `python examples/worker_group.py`;
across nodes the same program spreads its workers round-robin: `dragon --hostfile hosts
examples/worker_group.py` (the program must be at the same path on every node). gcc and a dragon_mp
built with its C API are needed.
"""

import os
import subprocess
import sys
import tempfile

import dragon_mp as multiprocessing
from dragon_mp import capi
from dragon_mp.native import ProcessGroup, ProcessTemplate

HERE = os.path.dirname(os.path.abspath(__file__))


def build(src, out):
    """Compile src with the C API's flags (before this process loads dragon_mp's runtime: the
    compiler is a child of this process, and a process that has loaded Go must not fork)."""
    subprocess.run(['gcc', '-O2', src, *capi.cflags(), *capi.libs(), '-o', out], check=True)


if __name__ == '__main__':
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    workdir = sys.argv[2] if len(sys.argv) > 2 else None     # a directory every node sees
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        exe = os.path.join(tmp, 'worker')
        build(os.path.join(HERE, 'worker.c'), exe)

        tasks, results = multiprocessing.Queue(), multiprocessing.Queue()
        for n in range(count):
            tasks.put_bytes(str(n).encode())
        group = ProcessGroup(restart=True)
        group.add_process(8, ProcessTemplate(exe, args=(tasks.descriptor(), results.descriptor(), '5')))
        group.init()
        group.start()
        answers = [results.get_bytes(timeout=120).split() for _ in range(count)]
        group.stop()                        # the workers waiting for tasks get SIGTERM
        group.close()
        total = sum(int(square) for _, _, square in answers)
        workers = len({pid for pid, _, _ in answers})
        assert sorted(int(n) for _, n, _ in answers) == list(range(count))
        print(f'{count} answers from {workers} worker processes ({group.restarts} restarts), '
              f'sum of squares {total}')
