"""The programs bench/multinode.py measures, run inside the nodes (network namespaces).

    --dragon-prog P     under `dragon --hostfile`: the parent on n0, children on n1
    --pool-prog P       under `dragon --hostfile` with k nodes: Pool scaling
    --hello             under `dragon --hostfile` with N nodes: bring-up and teardown
    --stdlib-main P     on n0: a managers Queue server and a Listener, measuring
    --stdlib-peer P     on n1: the other end of --stdlib-main
    --tcp-main P        on n0: plain Python TCP sockets, measuring
    --tcp-peer P        on n1: the other end of --tcp-main

Every measurement prints a line `BENCH {json}`. Child targets are module-level functions and
the module imports nothing heavy at top level: dragon_mp children import it as __mp_main__.
"""

import json
import sys
import time

MiB = 1 << 20
PING = 64


# --- the measuring helper (the same code measures every implementation) ------------------------

def measure(body, p, warm):
    """Warm up with body(warm), calibrate n so that body(n) lasts ~p['sample_sec'], return the
    durations of p['samples'] calls body(n) and n."""
    body(warm)
    target = p['sample_sec']
    n = 1
    while True:
        t0 = time.perf_counter()
        body(n)
        d = time.perf_counter() - t0
        if d >= target / 4 or n >= 1 << 22:
            break
        n *= 2
    n = max(1, int(n * target / max(d, 1e-6)))
    out = []
    for _ in range(p['samples']):
        t0 = time.perf_counter()
        body(n)
        out.append(time.perf_counter() - t0)
    return out, n


def latency(body, p, warm=50):
    durs, n = measure(body, p, warm)
    return {'unit': 'us', 'samples': [d / n * 1e6 for d in durs], 'ops_per_sample': n}


def bandwidth(body, size, p, warm=None):
    warm = warm or max(2, (32 * MiB) // size)
    durs, n = measure(body, p, warm)
    return {'unit': 'MB/s', 'samples': [n * size / d / 1e6 for d in durs], 'ops_per_sample': n}


def emit(key, res):
    res['key'] = key
    print('BENCH ' + json.dumps(res), flush=True)


def pingpong(put, get, msg=b'x' * PING):
    def body(n):
        for _ in range(n):
            put(msg)
            get()
    return body


# --- dragon_mp: parent on n0, children on n1 ----------------------------------------------------

def d_echo(qin, qout):
    while True:
        m = qin.get()
        if m is None:
            return
        qout.put(m)


def d_owner_echo(back):
    """Owns the queue it reads from (on n1) and answers into `back` (on n0)."""
    import dragon_mp as mp
    q = mp.Queue()
    back.put(q)
    d_echo(q, back)


def d_pipe_echo(conn):
    while True:
        m = conn.recv_bytes()
        if not m:
            return
        conn.send_bytes(m)


def d_producer(ctrl, q):
    while True:
        req = ctrl.get()
        if req is None:
            return
        n, size = req
        payload = bytes(size)
        for _ in range(n):
            q.put(payload)


def d_owner_producer(ctrl, back):
    """Owns the queue it fills (on n1): the consumer on n0 pulls remotely."""
    import dragon_mp as mp
    q = mp.Queue()
    back.put(q)
    d_producer(ctrl, q)


def d_pipe_sender(conn):
    while True:
        req = conn.recv()
        if req is None:
            return
        n, size = req
        payload = bytes(size)
        for _ in range(n):
            conn.send_bytes(payload)


def dragon_prog(p):
    import socket
    import dragon_mp as mp
    from dragon_mp.placement import Policy
    peer = p['peer']
    print(f'dragon_mp parent on {socket.gethostname()}, children on {peer}', file=sys.stderr, flush=True)

    def start(target, *args):
        proc = mp.Process(target=target, args=args, policy=Policy(host=peer))
        proc.start()
        return proc

    if 'lat' in p['groups']:
        # Queue ping-pong, both queues made by the parent: they live on n0, the child's get and
        # put are remote operations.
        q1, q2 = mp.Queue(), mp.Queue()
        c = start(d_echo, q1, q2)
        emit('dragon.queue_pingpong.n0', latency(pingpong(q1.put, q2.get), p))
        q1.put(None)
        c.join(60)
        # Each queue lives on the node that reads it: every put is remote, every get local.
        back = mp.Queue()
        c = start(d_owner_echo, back)
        qa = back.get(timeout=60)
        emit('dragon.queue_pingpong.recv', latency(pingpong(qa.put, back.get), p))
        qa.put(None)
        c.join(60)
        # Pipe ping-pong (a Pipe's channels live on the node that made it: n0).
        a, b = mp.Pipe()
        c = start(d_pipe_echo, b)
        emit('dragon.pipe_pingpong', latency(pingpong(a.send_bytes, a.recv_bytes), p))
        a.send_bytes(b'')
        c.join(60)

    if 'bw' in p['groups']:
        for mode in ('push', 'pull'):
            ctrl = mp.Queue()
            if mode == 'push':      # queue on n0 (the consumer's node): the child's puts are remote
                q = mp.Queue()
                c = start(d_producer, ctrl, q)
            else:                   # queue on n1 (the producer's node): the parent's gets are remote
                back = mp.Queue()
                c = start(d_owner_producer, ctrl, back)
                q = back.get(timeout=60)
            for size in p['sizes']:
                def body(n, size=size):
                    ctrl.put((n, size))
                    for _ in range(n):
                        q.get()
                emit(f'dragon.queue_bw.{mode}.{size}', bandwidth(body, size, p))
            ctrl.put(None)
            c.join(60)
        # Pipe: the child on n1 sends (remote sends), the parent on n0 receives.
        a, b = mp.Pipe()
        c = start(d_pipe_sender, b)
        for size in p['sizes']:
            def body(n, size=size):
                a.send((n, size))
                for _ in range(n):
                    a.recv_bytes()
            emit(f'dragon.pipe_bw.{size}', bandwidth(body, size, p))
        a.send(None)
        c.join(60)


# --- dragon_mp: a Pool over k nodes -------------------------------------------------------------

def nap(seconds):
    time.sleep(seconds)


def mib_result(i):
    return bytes(MiB)


def pool_prog(p):
    import dragon_mp as mp
    from dragon_mp import placement
    k = len(placement.nodes())
    with mp.Pool(2 * k) as pool:
        pool.map(nap, [0.01] * (4 * k), chunksize=1)        # every worker started
        samples = []
        for _ in range(p['samples']):
            t0 = time.perf_counter()
            rs = [pool.apply_async(nap, (0.01,)) for _ in range(p['tasks'])]
            for r in rs:
                r.get()
            samples.append(p['tasks'] / (time.perf_counter() - t0))
        emit(f'dragon.pool_sleep.{k}', {'unit': 'tasks/s', 'samples': samples})
        samples = []
        for _ in range(p['samples']):
            t0 = time.perf_counter()
            for _ in pool.imap_unordered(mib_result, range(p['results']), chunksize=1):
                pass
            samples.append(p['results'] * MiB / (time.perf_counter() - t0) / 1e6)
        emit(f'dragon.pool_mib_results.{k}', {'unit': 'MB/s', 'samples': samples})


def hello(p):
    import os
    print(f'START {time.time()}', flush=True)
    import dragon_mp as mp
    q = mp.Queue()
    q.put(os.getpid())
    q.get()
    print(f'END {time.time()}', flush=True)


# --- stdlib: a managers Queue served on n0, and a multiprocessing.connection over TCP ------------

_queues = {}


def _get_queue(name):
    import queue
    return _queues.setdefault(name, queue.Queue())


def _manager_class():
    from multiprocessing.managers import BaseManager

    class QueueManager(BaseManager):
        pass
    QueueManager.register('get_queue', callable=_get_queue)
    return QueueManager


def stdlib_main(p):
    """On n0: serve the queues (a manager server process, as a user would), measure from here; the
    peer on n1 (stdlib_peer) echoes and produces."""
    import multiprocessing
    from multiprocessing.connection import Listener
    ip, key = p['ip'], bytes.fromhex(p['authkey'])
    mgr = _manager_class()(address=(ip, 0), authkey=key, ctx=multiprocessing.get_context('fork'))
    mgr.start()
    listener = Listener((ip, 0), authkey=key)
    print(f'LISTEN {mgr.address[1]} {listener.address[1]}', flush=True)
    q1, q2, qb, ctrl = (mgr.get_queue(n) for n in ('q1', 'q2', 'qb', 'ctrl'))
    ctrl.put(('conn',))
    conn = listener.accept()
    if 'lat' in p['groups']:
        ctrl.put(('echo',))
        emit('stdlib.manager_queue_pingpong', latency(pingpong(q1.put, q2.get), p))
        q1.put(None)
        conn.send(('echo',))
        emit('stdlib.connection_pingpong', latency(pingpong(conn.send_bytes, conn.recv_bytes), p))
        conn.send_bytes(b'')
    if 'bw' in p['groups']:
        for size in p['sizes']:
            def body(n, size=size):
                ctrl.put(('produce', n, size))
                for _ in range(n):
                    qb.get()
            emit(f'stdlib.manager_queue_bw.{size}', bandwidth(body, size, p))

            def body(n, size=size):
                conn.send(('send', n, size))
                for _ in range(n):
                    conn.recv_bytes()
            emit(f'stdlib.connection_bw.{size}', bandwidth(body, size, p))
    conn.send(('stop',))
    ctrl.put(('stop',))
    conn.close()
    listener.close()
    mgr.shutdown()


def stdlib_peer(p):
    import threading
    from multiprocessing.connection import Client
    ip, key = p['ip'], bytes.fromhex(p['authkey'])
    mgr = _manager_class()(address=(ip, p['mgr_port']), authkey=key)
    mgr.connect()
    q1, q2, qb, ctrl = (mgr.get_queue(n) for n in ('q1', 'q2', 'qb', 'ctrl'))

    def serve_conn(conn):
        while True:
            cmd = conn.recv()
            if cmd[0] == 'stop':
                return
            if cmd[0] == 'echo':
                while True:
                    m = conn.recv_bytes()
                    if not m:
                        break
                    conn.send_bytes(m)
            elif cmd[0] == 'send':
                _, n, size = cmd
                payload = bytes(size)
                for _ in range(n):
                    conn.send_bytes(payload)
    threads = []
    while True:
        cmd = ctrl.get()
        if cmd[0] == 'stop':
            break
        if cmd[0] == 'conn':
            conn = Client((ip, p['conn_port']), authkey=key)
            threads.append(threading.Thread(target=serve_conn, args=(conn,)))
            threads[-1].start()
        elif cmd[0] == 'echo':
            while True:
                m = q1.get()
                if m is None:
                    break
                q2.put(m)
        elif cmd[0] == 'produce':
            _, n, size = cmd
            payload = bytes(size)
            for _ in range(n):
                qb.put(payload)
    for t in threads:
        t.join()


# --- plain Python TCP sockets (the floor of what a Python process gets from this link) ----------

def _recv_exact(s, view):
    got = 0
    while got < len(view):
        k = s.recv_into(view[got:])
        if not k:
            raise EOFError
        got += k


def tcp_main(p):
    import socket
    ls = socket.create_server((p['ip'], 0))
    print(f'LISTEN {ls.getsockname()[1]}', flush=True)
    s, _ = ls.accept()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if 'lat' in p['groups']:
        buf = bytearray(PING)
        view = memoryview(buf)

        def body(n):
            s.sendall(n.to_bytes(8, 'little') + PING.to_bytes(8, 'little'))
            for _ in range(n):
                s.sendall(buf)
                _recv_exact(s, view)
        emit('raw.tcp-py.pingpong.64', latency(body, p))
    if 'bw' in p['groups']:
        for size in p['sizes']:
            buf = bytearray(size)
            view = memoryview(buf)

            def body(n, size=size, view=view):
                s.sendall((n | 1 << 62).to_bytes(8, 'little') + size.to_bytes(8, 'little'))
                for _ in range(n):
                    _recv_exact(s, view)
            emit(f'raw.tcp-py.bulk.{size}', bandwidth(body, size, p))
    s.sendall(bytes(16))
    s.close()


def tcp_peer(p):
    import socket
    s = socket.create_connection((p['ip'], p['port']))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hdr = bytearray(16)
    while True:
        _recv_exact(s, memoryview(hdr))
        n, size = int.from_bytes(hdr[:8], 'little'), int.from_bytes(hdr[8:], 'little')
        if n == 0:
            return
        if n & 1 << 62:            # send n messages of size bytes
            payload = bytes(size)
            for _ in range(n & ~(1 << 62)):
                s.sendall(payload)
        else:                      # echo n messages of size bytes
            buf = bytearray(size)
            view = memoryview(buf)
            for _ in range(n):
                _recv_exact(s, view)
                s.sendall(buf)


MODES = {'--dragon-prog': dragon_prog, '--pool-prog': pool_prog, '--hello': hello,
         '--stdlib-main': stdlib_main, '--stdlib-peer': stdlib_peer,
         '--tcp-main': tcp_main, '--tcp-peer': tcp_peer}

if __name__ == '__main__':
    MODES[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
