"""stdlib's ordering guarantees, across nodes (issue: "Many nodes, fast and exact").

A put to another node's Queue is posted: it does not wait for the owner (as
stdlib's put hands the object to a feeder thread). What stdlib still
promises must hold:

- what a process put is in the queue once its join() returns, and once its
  exit code is visible (stdlib flushes the feeder thread at exit);
- Queue.close() + join_thread() wait until this process's puts are in;
- a lock released on one node and acquired on another sees every write made
  under it (Value/Array);
- the same for Pipe sends, which are posted too: a child's sends are there
  when join() returns.

Each program runs many trials with a producer that exits (or signals) right
after its last put, so that late items would show.
"""

import pytest

from multinode import PRELUDE, cluster_fixture, no_leaks_fixture, run_dragon

net = cluster_fixture(3, 'dmg')
no_leaks = no_leaks_fixture()

TRIALS = 12
ITEMS = 2000
PAD = 4 << 10   # bytes per item: a long stream of posts, late if anything can be


def check(r, marker='ALL IN ORDER'):
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert marker in r.stdout, (r.stdout, r.stderr)


@pytest.mark.parametrize('how', ['join', 'exitcode'])
def test_puts_are_in_the_queue_when_the_producer_is_joined(net, how):
    # A producer on node 2 puts into a Queue of node 0 and exits; the parent
    # joins it (or polls its exit code) and puts a sentinel: no item after it.
    r = run_dragon(net, PRELUDE + f'''
    def produce(q, n, trial):
        pad = b'x' * {PAD}
        for i in range(n):
            q.put((trial, i, pad))

    if __name__ == '__main__':
        q = mp.Queue()
        late = 0
        for trial in range({TRIALS}):
            p = mp.Process(target=produce, args=(q, {ITEMS}, trial), policy=Policy(node=2))
            p.start()
            if {how!r} == 'join':
                p.join()
            else:
                while p.exitcode is None:
                    time.sleep(0.001)
            assert p.exitcode == 0
            q.put('sentinel')
            got = []
            while True:
                item = q.get(timeout=60)
                if item == 'sentinel':
                    break
                got.append(item[:2])
            if got != [(trial, i) for i in range({ITEMS})]:
                late += 1
                print('trial', trial, 'got', len(got), 'before the sentinel', flush=True)
        while not q.empty():
            print('after the sentinel:', q.get(), flush=True)
        print('late trials:', late)
        if late == 0:
            print('ALL IN ORDER')
    ''')
    check(r)


def test_puts_to_a_third_node_are_in_when_joined(net):
    # The producer (node 1) puts into a Queue of node 2; the parent (node 0)
    # joins it and puts the sentinel into the same queue from node 0; a
    # consumer on node 2 must see every item before the sentinel.
    r = run_dragon(net, PRELUDE + f'''
    def produce(q, n, trial):
        for i in range(n):
            q.put((trial, i))

    def owner(back, results):
        q = mp.Queue()
        back.put(q)
        while True:
            got = []
            while True:
                item = q.get()
                if item in ('sentinel', 'stop'):
                    break
                got.append(item)
            if item == 'stop':
                return
            results.put(len(got) if got == [(got[0][0], i) for i in range(len(got))] else -1)

    if __name__ == '__main__':
        back, results = mp.Queue(), mp.Queue()
        o = mp.Process(target=owner, args=(back, results), policy=Policy(node=2))
        o.start()
        q = back.get(timeout=60)
        counts = []
        for trial in range({TRIALS}):
            p = mp.Process(target=produce, args=(q, {ITEMS}, trial), policy=Policy(node=1))
            p.start()
            p.join()
            q.put('sentinel')
            counts.append(results.get(timeout=60))
        q.put('stop')
        o.join(60)
        print('counts', counts)
        if counts == [{ITEMS}] * {TRIALS}:
            print('ALL IN ORDER')
    ''')
    check(r)


def test_close_and_join_thread_wait_for_the_puts(net):
    # The producer (node 1) puts into a Queue of node 0, then close() +
    # join_thread(), then sets an Event of node 2; the parent waits for the
    # Event and puts the sentinel.
    r = run_dragon(net, PRELUDE + f'''
    def produce(q, n, trial, done, hold):
        for i in range(n):
            q.put((trial, i))
        q.close()
        q.join_thread()
        done.set()
        hold.wait()            # still alive: only join_thread can be the reason

    def owner(back):
        back.put((mp.Event(), mp.Event()))
        time.sleep(600)

    if __name__ == '__main__':
        back = mp.Queue()
        o = mp.Process(target=owner, args=(back,), policy=Policy(node=2), daemon=True)
        o.start()
        q = mp.Queue()
        late = 0
        for trial in range({TRIALS}):
            done, hold = back.get(timeout=60) if trial == 0 else (mp.Event(), mp.Event())
            p = mp.Process(target=produce, args=(q, {ITEMS}, trial, done, hold), policy=Policy(node=1))
            p.start()
            assert done.wait(60)
            q.put('sentinel')
            got = []
            while (item := q.get(timeout=60)) != 'sentinel':
                got.append(item)
            late += got != [(trial, i) for i in range({ITEMS})]
            hold.set()
            p.join()
        print('late trials:', late)
        if late == 0:
            print('ALL IN ORDER')
    ''')
    check(r)


def test_lock_release_publishes_writes(net):
    # Two processes on nodes 1 and 2 increment a Value and append to an Array
    # of node 0 under a Lock of node 2; every update is seen by the next
    # holder, whatever node it is on.
    r = run_dragon(net, PRELUDE + '''
    def work(lock, counter, arr, rounds):
        for _ in range(rounds):
            with lock:
                v = counter.value
                arr[v % len(arr)] = v
                counter.value = v + 1

    def owner(back):
        back.put(mp.Lock())
        time.sleep(600)

    if __name__ == '__main__':
        back = mp.Queue()
        o = mp.Process(target=owner, args=(back,), policy=Policy(node=2), daemon=True)
        o.start()
        lock = back.get(timeout=60)
        counter, arr = mp.Value('i', 0, lock=False), mp.Array('i', 64, lock=False)
        ps = [mp.Process(target=work, args=(lock, counter, arr, 300), policy=Policy(node=n))
              for n in (1, 2, 1, 2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        with lock:
            ok = counter.value == 1200 and sorted(arr) == sorted(range(1200 - 64, 1200))
        print('counter', counter.value)
        if ok:
            print('ALL IN ORDER')
    ''')
    check(r)


def test_pipe_sends_are_there_when_joined(net):
    # A child on node 1 sends on a Pipe of node 0 and exits; once join()
    # returns, every message can be read without waiting (poll(0) is true).
    r = run_dragon(net, PRELUDE + f'''
    def send(conn, n, trial):
        for i in range(n):
            conn.send((trial, i))

    if __name__ == '__main__':
        late = 0
        for trial in range({TRIALS}):
            a, b = mp.Pipe()
            p = mp.Process(target=send, args=(b, {ITEMS}, trial), policy=Policy(node=1))
            p.start()
            p.join()
            got = []
            while a.poll(0):
                got.append(a.recv())
            late += got != [(trial, i) for i in range({ITEMS})]
        print('late trials:', late)
        if late == 0:
            print('ALL IN ORDER')
    ''')
    check(r)
