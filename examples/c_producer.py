"""A C producer feeding a Python Pool (docs/c_api.md).

Builds examples/c_producer.c against the C API, starts it inside this run with the descriptor of a
Queue, and squares every number it sends in a Pool. Run it as `python examples/c_producer.py` (gcc
and a dragon_mp built with its C API are needed).
"""

import os
import subprocess
import sys
import tempfile

import dragon_mp as multiprocessing
from dragon_mp import capi

HERE = os.path.dirname(os.path.abspath(__file__))


def build(src, out):
    """Compile src with the C API's flags (before this process loads dragon_mp's runtime: the
    compiler is a child of this process, and a process that has loaded Go must not fork)."""
    subprocess.run(['gcc', '-O2', src, *capi.cflags(), *capi.libs(), '-o', out], check=True)


def exec_program(argv):
    """A Process target that becomes the C program: it keeps the run's environment (DRAGON_MP_RUN...),
    so the program can dmp_attach, and its exit code is the Process's."""
    os.execv(argv[0], argv)


def square(n):
    return n * n


if __name__ == '__main__':
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, 'c_producer')
        build(os.path.join(HERE, 'c_producer.c'), exe)

        q = multiprocessing.Queue()
        producer = multiprocessing.Process(target=exec_program, args=([exe, q.descriptor(), str(count)],))
        producer.start()
        with multiprocessing.Pool(4) as pool:
            results = []
            while True:
                item = q.get_bytes()            # raw bytes, as C sent them
                if not item:                    # the empty message: no more
                    break
                results.append(pool.apply_async(square, (int(item),)))
            total = sum(r.get() for r in results)
        producer.join()
        print(f'{len(results)} items from C, sum of squares {total}, producer exit code {producer.exitcode}')
