"""The README's demo: processes, a queue, a lock and a pool.

Run it as `dragon examples/demo.py` or `python examples/demo.py`.
"""

import dragon_mp as multiprocessing


def work(q, lock, i):
    with lock:
        q.put(i * i)


if __name__ == "__main__":
    q, lock = multiprocessing.Queue(), multiprocessing.Lock()
    ps = [multiprocessing.Process(target=work, args=(q, lock, i)) for i in range(8)]
    for p in ps:
        p.start()
    print(sorted(q.get() for _ in ps))
    for p in ps:
        p.join()
    print("exit codes:", [p.exitcode for p in ps])
    with multiprocessing.Pool() as pool:
        print(pool.map(abs, range(-5, 5)))
    print("cpus:", multiprocessing.cpu_count())
