"""Cross-node benchmarks: dragon_mp between two hosts, next to raw TCP, raw quic-go and dragon_mp's own
QUIC mesh (bench/netbase, Go, no Python) and stdlib's way of doing it (a multiprocessing.managers
Queue and a multiprocessing.connection over TCP), on the same link, interleaved in one run.

    sudo python bench/multinode.py                 # full run (a few minutes)
    sudo python bench/multinode.py --quick         # smoke test
    sudo python bench/multinode.py --rounds 5 --md bench/results/multinode.md --json bench/results/multinode.json

Needs root, iproute2, openssh-server/-client and Go (the driver builds bench/netbase). The two hosts are
network namespaces n0 and n1 joined by veth pairs and a bridge (tests/cluster.py); dragon_mp runs under
the real launcher (`dragon --hostfile ... --launch 'ssh -F cfg {host} {command}'`) with the real agents.
The table goes to stdout, progress to stderr. See bench/README.md, "Across nodes".

This file is also the program of every measured process (internal modes below): `--dragon-prog` (run by
`dragon`, parent on n0, children placed on n1), `--stdlib-main` (n0) and `--stdlib-peer` (n1). Child
targets are module-level functions and the module imports nothing heavy at top level, because dragon_mp
children import it as __mp_main__.
"""

import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MiB = 1 << 20
PING = 64


# --- shared measuring helper (the same code measures dragon_mp and stdlib) --------------------

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


# --- dragon_mp program (run under `dragon --hostfile`, parent on n0) -------------------------

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


def d_rpc_probe(q, out, p):
    """On n1, with q on n0: the cost of one remote operation, alone (no partner process involved):
    get_nowait on an empty queue (one request and its 'empty' reply) and put of 64 B."""
    import queue as stdq

    def get_empty(n):
        for _ in range(n):
            try:
                q.get_nowait()
            except stdq.Empty:
                pass

    def put(n, msg=b'x' * PING):
        for _ in range(n):
            q.put(msg)
    out.put(('dragon.remote_get_nowait_empty', latency(get_empty, p)))
    out.put(('dragon.remote_put_64', latency(put, p)))
    out.put(None)


def dragon_prog(p):
    import socket
    import dragon_mp as mp
    from dragon_mp.placement import Policy
    peer = p['peer']
    here = socket.gethostname()
    print(f'dragon_mp parent on {here}, children on {peer}', file=sys.stderr, flush=True)
    msg = b'x' * PING

    def start(target, *args):
        proc = mp.Process(target=target, args=args, policy=Policy(host=peer))
        proc.start()
        return proc

    def pingpong(put, get):
        def body(n):
            for _ in range(n):
                put(msg)
                get()
        return body

    if 'lat' in p['groups']:
        # Queue ping-pong, both queues made by the parent: they live on n0, the child's get and
        # put are remote operations.
        q1, q2 = mp.Queue(), mp.Queue()
        c = start(d_echo, q1, q2)
        emit('dragon.queue_pingpong.n0', latency(pingpong(q1.put, q2.get), p))
        q1.put(None)
        c.join(60)
        # Each queue lives on the node that reads it: the parent's put and the child's put are
        # remote, every get is local.
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
        # One remote operation alone, measured on n1 (diagnostic: where a round trip's time goes).
        q, out = mp.Queue(), mp.Queue()
        c = start(d_rpc_probe, q, out, p)
        for key, res in iter(out.get, None):
            emit(key, res)
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


# --- stdlib: a managers Queue served on n0, and a multiprocessing.connection over TCP --------

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
    msg = b'x' * PING
    if 'lat' in p['groups']:
        ctrl.put(('echo',))

        def body(n):
            for _ in range(n):
                q1.put(msg)
                q2.get()
        emit('stdlib.manager_queue_pingpong', latency(body, p))
        q1.put(None)
        ctrl.put(('conn',))
        conn = listener.accept()

        def body(n):
            for _ in range(n):
                conn.send_bytes(msg)
                conn.recv_bytes()
        emit('stdlib.connection_pingpong', latency(body, p))
        conn.send_bytes(b'')
        conn.close()
    if 'bw' in p['groups']:
        for size in p['sizes']:
            def body(n, size=size):
                ctrl.put(('produce', n, size))
                for _ in range(n):
                    qb.get()
            emit(f'stdlib.manager_queue_bw.{size}', bandwidth(body, size, p))
    ctrl.put(('stop',))
    listener.close()
    mgr.shutdown()


def stdlib_peer(p):
    from multiprocessing.connection import Client
    ip, key = p['ip'], bytes.fromhex(p['authkey'])
    mgr = _manager_class()(address=(ip, p['mgr_port']), authkey=key)
    mgr.connect()
    q1, q2, qb, ctrl = (mgr.get_queue(n) for n in ('q1', 'q2', 'qb', 'ctrl'))
    while True:
        cmd = ctrl.get()
        if cmd[0] == 'stop':
            return
        if cmd[0] == 'echo':
            while True:
                m = q1.get()
                if m is None:
                    break
                q2.put(m)
        elif cmd[0] == 'conn':
            conn = Client((ip, p['conn_port']), authkey=key)
            while True:
                m = conn.recv_bytes()
                if not m:
                    break
                conn.send_bytes(m)
            conn.close()
        elif cmd[0] == 'produce':
            _, n, size = cmd
            payload = bytes(size)
            for _ in range(n):
                qb.put(payload)


# --- the driver ------------------------------------------------------------------------------

def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(argv, **kw):
    import subprocess
    kw.setdefault('capture_output', True)
    kw.setdefault('text', True)
    try:
        r = subprocess.run(argv, timeout=kw.pop('timeout', 30), **kw)
        return r.stdout.strip() if r.returncode == 0 else ''
    except (OSError, subprocess.SubprocessError):
        return ''


def parse_bench(text):
    out = []
    for line in text.splitlines():
        if line.startswith('BENCH '):
            out.append(json.loads(line[6:]))
    return out


class Driver:
    IMPLS = ('dragon', 'tcp', 'quic', 'tls', 'agent', 'stdlib')

    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.p = {'samples': 3 if args.quick else 5, 'sample_sec': 0.05 if args.quick else 0.2,
                  'sizes': [MiB, 16 * MiB]}
        self.samples = {}        # key -> list of samples (all rounds)
        self.meta = {}           # key -> unit etc.
        self.failures = []
        self.timeout = 120 if args.quick else 300

    def add(self, results, rnd):
        for r in results:
            k = r['key']
            self.samples.setdefault(k, []).extend(r['samples'])
            self.meta.setdefault(k, {'unit': r['unit'], 'rounds': []})['rounds'].append(
                {'round': rnd, 'samples': r['samples'], 'ops_per_sample': r.get('ops_per_sample')})

    def fail(self, what, why):
        why = why.strip()[-1500:]
        log(f'  FAILED {what}: {why}')
        self.failures.append({'what': what, 'why': why})

    # environment and machine -----------------------------------------------------------

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(('DRAGON_MP_', 'SLURM_'))}
        env['PYTHONUNBUFFERED'] = '1'
        env['PYTHONPATH'] = os.pathsep.join([ROOT] + [x for x in env.get('PYTHONPATH', '').split(os.pathsep) if x])
        return env

    def machine(self):
        import platform
        c = self.c
        cpu = ''
        try:
            with open('/proc/cpuinfo') as f:
                cpu = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), '')
        except OSError:
            pass
        link = sh(['ip', '-n', c.namespaces[0], '-d', '-o', 'link', 'show', 'eth0'])
        mtu = link.split(' mtu ', 1)[1].split()[0] if ' mtu ' in link else '?'
        kind = 'veth' if 'veth' in link else '?'
        offload = sh(c.argv(0, ['ethtool', '-k', 'eth0'])) if sh(['sh', '-c', 'command -v ethtool']) else ''
        offl = {l.split(':')[0].strip(): l.split(':')[1].split()[0] for l in offload.splitlines()
                if ':' in l and l.split(':')[0].strip() in (
                    'tcp-segmentation-offload', 'generic-segmentation-offload',
                    'generic-receive-offload', 'tx-udp-segmentation')}
        ping = c.run(0, ['ping', '-q', '-c', '20', '-i', '0.01', c.ips[1]]).stdout
        rtt = ping.strip().splitlines()[-1] if ping.strip() else ''
        rmem = sh(['cat', '/proc/sys/net/core/rmem_max'])
        go = sh(['go', 'version'])
        quic = ''
        try:
            with open(os.path.join(ROOT, 'go.mod')) as f:
                quic = next((l.split()[1] for l in f if 'quic-go/quic-go ' in l), '')
        except OSError:
            pass
        return {
            'host': platform.node(), 'cpu': cpu, 'cpus': os.cpu_count(),
            'usable_cpus': len(os.sched_getaffinity(0)), 'kernel': platform.release(),
            'python': platform.python_version(), 'go': go, 'quic_go': quic,
            'loadavg_start': os.getloadavg(),
            'git': sh(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD']),
            'git_dirty': bool(sh(['git', '-C', ROOT, 'status', '--porcelain', '-uno'])),
            'link': {'kind': kind, 'mtu': mtu, 'path': f'{c.ips[0]} (n0 eth0, veth) -> bridge {c.bridge} -> '
                     f'(veth, n1 eth0) {c.ips[1]}', 'offloads_n0_eth0': offl,
                     'ping_rtt': rtt, 'rmem_max': rmem, 'ip_link_n0': link},
        }

    # implementations -------------------------------------------------------------------

    def run_dragon(self, group, rnd):
        c = self.c
        p = dict(self.p, groups=[group], peer='n1')
        argv = [sys.executable, '-m', 'dragon_mp.launcher', '--hostfile', self.hostfile,
                '--launch', f'ssh -F {c.ssh_config} {{host}} {{command}}',
                os.path.abspath(__file__), '--dragon-prog', json.dumps(p)]
        t0 = time.monotonic()
        try:
            r = c.run(0, argv, timeout=self.timeout, cwd=ROOT, env=self.env())
        except Exception as e:      # timeout
            return self.fail(f'dragon {group} round {rnd}', repr(e))
        res = parse_bench(r.stdout)
        if r.returncode != 0 or not res:
            self.fail(f'dragon {group} round {rnd}', f'exit {r.returncode}\n{r.stderr}')
        self.add(res, rnd)
        log(f'  dragon_mp {group}: {time.monotonic() - t0:.1f} s')

    def run_netbase(self, proto, group, rnd):
        import subprocess
        c = self.c
        tests = [('pingpong', PING, False)] if group == 'lat' else \
            [(t, s, False) for s in self.p['sizes'] for t in ('bulk', 'bulk-sw')]
        if proto == 'agent' and group == 'lat':
            tests.append(('pingpong', PING, True))     # caller locked to its thread, as a cgo call is
        t0 = time.monotonic()
        for test, size, lock in tests:
            srv = c.popen(1, [self.netbase, 'serve', '-proto', proto, '-listen', f'{c.ips[1]}:0',
                              '-id', os.path.join(self.tmp, 'node2.json')],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
            try:
                line = srv.stdout.readline().split()
                if len(line) != 2 or line[0] != 'ADDR':
                    self.fail(f'netbase {proto} serve', srv.stderr.read() if srv.poll() is not None else str(line))
                    continue
                r = c.run(0, [self.netbase, 'run', '-proto', proto, '-connect', line[1], '-test', test,
                              '-size', str(size), '-samples', str(self.p['samples']),
                              '-sample-sec', str(self.p['sample_sec']),
                              '-id', os.path.join(self.tmp, 'node1.json'), f'-lock={str(lock).lower()}'],
                             timeout=self.timeout)
                if r.returncode != 0:
                    self.fail(f'netbase {proto} {test} {size} round {rnd}', r.stderr)
                    continue
                res = json.loads(r.stdout.strip().splitlines()[-1])
                res['key'] = f'raw.{proto}{"-locked" if lock else ""}.{test}.{size}'
                self.add([res], rnd)
            finally:
                srv.stdin.close()
                try:
                    srv.wait(5)
                except subprocess.TimeoutExpired:
                    srv.kill()
                    srv.wait()
        log(f'  netbase {proto} {group}: {time.monotonic() - t0:.1f} s')

    def run_stdlib(self, group, rnd):
        import subprocess
        c = self.c
        p = dict(self.p, groups=[group], ip=c.ips[0], authkey=os.urandom(16).hex())
        t0 = time.monotonic()
        main = c.popen(0, [sys.executable, os.path.abspath(__file__), '--stdlib-main', json.dumps(p)],
                       cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peer = None
        try:
            line = main.stdout.readline().split()
            if len(line) != 3 or line[0] != 'LISTEN':
                main.wait(10)
                return self.fail(f'stdlib {group} round {rnd}', main.stderr.read())
            pp = dict(p, mgr_port=int(line[1]), conn_port=int(line[2]))
            peer = c.popen(1, [sys.executable, os.path.abspath(__file__), '--stdlib-peer', json.dumps(pp)],
                           cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = main.communicate(timeout=self.timeout)
            pout, perr = peer.communicate(timeout=30)
            res = parse_bench(out)
            if main.returncode != 0 or peer.returncode != 0 or not res:
                self.fail(f'stdlib {group} round {rnd}', f'main {main.returncode}: {err}\npeer {peer.returncode}: {perr}')
            self.add(res, rnd)
        except subprocess.TimeoutExpired:
            self.fail(f'stdlib {group} round {rnd}', 'timed out')
        finally:
            for proc in (main, peer):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        log(f'  stdlib {group}: {time.monotonic() - t0:.1f} s')

    # the run ---------------------------------------------------------------------------

    def run(self):
        import subprocess
        import tempfile
        sys.path.insert(0, os.path.join(ROOT, 'tests'))
        import cluster as cl
        if os.geteuid() != 0:
            raise SystemExit('multinode.py needs root (network namespaces)')
        self.tmp = tempfile.mkdtemp(prefix='dmp-mnbench-')
        os.chmod(self.tmp, 0o755)
        self.netbase = os.path.join(self.tmp, 'netbase')
        log('building bench/netbase ...')
        subprocess.run(['go', 'build', '-o', self.netbase, './bench/netbase'], cwd=ROOT, check=True)
        subprocess.run([self.netbase, 'gen', '-dir', self.tmp], check=True)
        t_start = time.monotonic()
        with cl.NetnsCluster(2, prefix='dmb') as c:
            self.c = c
            c.start_sshd()
            self.hostfile = os.path.join(c.tmpdir, 'hosts')
            with open(self.hostfile, 'w') as f:
                f.write('\n'.join(c.hosts) + '\n')
            self.info = self.machine()
            log(f"machine: {self.info['cpu']}, {self.info['usable_cpus']} cpus, load {self.info['loadavg_start']}")
            log(f"link: {self.info['link']['path']}, MTU {self.info['link']['mtu']}, {self.info['link']['ping_rtt']}")
            rounds = self.args.rounds or (1 if self.quick else 3)
            for rnd in range(rounds):
                order = list(self.IMPLS) if rnd % 2 == 0 else list(reversed(self.IMPLS))
                for group in ('lat', 'bw'):
                    log(f'round {rnd + 1}/{rounds}, {group}: {" ".join(order)}')
                    for impl in order:
                        if impl == 'dragon':
                            self.run_dragon(group, rnd)
                        elif impl == 'stdlib':
                            self.run_stdlib(group, rnd)
                        else:
                            self.run_netbase(impl, group, rnd)
            self.info['loadavg_end'] = os.getloadavg()
            self.info['duration_s'] = round(time.monotonic() - t_start, 1)
            self.info['rounds'] = rounds
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.report()

    # report ----------------------------------------------------------------------------

    def med(self, key):
        s = self.samples.get(key)
        return statistics.median(s) if s else None

    def iqr_note(self, key):
        s = sorted(self.samples.get(key) or [])
        if len(s) < 4:
            return ''
        q = statistics.quantiles(s, n=4)
        half = (q[2] - q[0]) / 2
        m = statistics.median(s)
        return f'±{100 * half / m:.0f}%' if m and half / m > 0.10 else ''

    def report(self):
        def fmt(key, unit=None):
            v = self.med(key)
            if v is None:
                return 'n/a'
            noisy = self.iqr_note(key)
            s = f'{v:.1f}' if v < 1000 else f'{v:.0f}'
            return s + (f' ({noisy})' if noisy else '')

        def ratio(num_key, den_key, lower_better):
            a, b = self.med(num_key), self.med(den_key)
            if a is None or b is None:
                return 'n/a'
            r = b / a if lower_better else a / b
            return f'{r:.2f}×' if r >= 0.1 else f'{r:.3f}×'

        size_name = {MiB: '1 MiB', 16 * MiB: '16 MiB'}
        # rows: label, dragon key, stdlib key, raw test key, lower_better
        rows = [
            ('Queue ping-pong 64 B, queues on n0 (µs)', 'dragon.queue_pingpong.n0',
             'stdlib.manager_queue_pingpong', 'pingpong.64', True),
            ("Queue ping-pong 64 B, each queue on its reader's node (µs)", 'dragon.queue_pingpong.recv',
             'stdlib.manager_queue_pingpong', 'pingpong.64', True),
            ('Pipe ping-pong 64 B (µs)', 'dragon.pipe_pingpong', 'stdlib.connection_pingpong',
             'pingpong.64', True),
        ]
        for size in self.p['sizes']:
            for mode, where in (('push', "queue on the consumer's node n0: remote put"),
                                ('pull', "queue on the producer's node n1: remote get")):
                rows.append((f'Queue bandwidth {size_name[size]}, {where} (MB/s)',
                             f'dragon.queue_bw.{mode}.{size}', f'stdlib.manager_queue_bw.{size}',
                             f'bulk.{size}', False))
        info = self.info
        lines = [
            '# dragon_mp across two nodes vs raw TCP / raw quic-go / our mesh / stdlib, one interleaved run',
            '',
            f"Machine: {info['cpu']}, {info['usable_cpus']} usable CPUs, Linux {info['kernel']}, "
            f"Python {info['python']}, {info['go']}, quic-go {info['quic_go']}; load average "
            f"{' '.join(f'{x:.2f}' for x in info['loadavg_start'])} at start, "
            f"{' '.join(f'{x:.2f}' for x in info['loadavg_end'])} at end (other work was running).",
            f"Link: {info['link']['path']}; {info['link']['kind']}, MTU {info['link']['mtu']}; "
            f"offloads on n0 eth0: {info['link']['offloads_n0_eth0'] or 'unknown (no ethtool)'}; "
            f"ping: `{info['link']['ping_rtt']}`.",
            f"dragon_mp at {info['git']}{' (+ uncommitted changes in the tree)' if info['git_dirty'] else ''}; "
            f"{info['rounds']} rounds × {self.p['samples']} samples of ~{self.p['sample_sec']} s each, "
            f"implementations interleaved per group (order reversed every other round); medians of all samples; "
            f"run took {info['duration_s']} s.",
            '',
            'Ratios: > 1 means dragon_mp (or, last column, our mesh) is better: baseline/x for times, '
            'x/baseline for rates. 0.25× = 4× slower / a quarter of the bandwidth. Raw bandwidth baselines '
            'are streamed (many messages in flight); `±x%` = half the interquartile range when above 10%.',
            '',
            '| workload | dragon_mp | stdlib equivalent | raw TCP | raw quic-go | our mesh (Go) '
            '| vs stdlib | vs raw quic-go | vs raw TCP | mesh vs raw quic-go |',
            '|---|---|---|---|---|---|---|---|---|---|',
        ]
        for label, dk, sk, rk, lower in rows:
            tk, qk, mk = (f'raw.{p}.{rk}' for p in ('tcp', 'quic', 'tls'))
            lines.append(f'| {label} | {fmt(dk)} | {fmt(sk)} | {fmt(tk)} | {fmt(qk)} | {fmt(mk)} '
                         f'| {ratio(dk, sk, lower)} | {ratio(dk, qk, lower)} | {ratio(dk, tk, lower)} '
                         f'| {ratio(mk, qk, lower)} |')
        lines += [
            '',
            'stdlib equivalent: stdlib processes cannot span nodes, so a user runs a '
            '`multiprocessing.managers.BaseManager` serving `queue.Queue`s on n0 (a server process; the '
            'measuring process on n0 and the peer on n1 both use proxies over TCP) for the Queue rows, and '
            '`multiprocessing.connection.Listener`/`Client` (TCP, authkey) for the Pipe row. The bandwidth '
            'rows use the same manager Queue (producer on n1, consumer on n0) for both dragon_mp columns.',
            '',
            '## The raw link (bench/netbase, Go, no Python)',
            '',
            'Stop-and-wait = one message in flight, each acked before the next (the shape of a synchronous '
            'remote put or get); streamed = messages back to back, one ack at the end.',
            '',
            'gocore/agent (Go) = the remote-operation path without Python: a process calls its node agent '
            'over the unix socket (agent.Client.Call), the agent forwards over the mesh, the other agent '
            'answers (ping-pong: the payload back; stop-and-wait: an empty reply, like a remote put).',
            '',
            '| test | raw TCP | raw quic-go | our mesh | gocore/agent over the mesh | mesh vs raw quic-go '
            '| agent vs mesh | raw quic-go vs raw TCP |',
            '|---|---|---|---|---|---|---|---|',
        ]
        raw_rows = [('ping-pong 64 B (µs)', 'pingpong.64', True)]
        for size in self.p['sizes']:
            raw_rows += [(f'streamed {size_name[size]} messages (MB/s)', f'bulk.{size}', False),
                         (f'stop-and-wait {size_name[size]} (MB/s)', f'bulk-sw.{size}', False)]
        for label, rk, lower in raw_rows:
            tk, qk, mk, ak = (f'raw.{p}.{rk}' for p in ('tcp', 'quic', 'tls', 'agent'))
            lines.append(f'| {label} | {fmt(tk)} | {fmt(qk)} | {fmt(mk)} | {fmt(ak)} | {ratio(mk, qk, lower)} '
                         f'| {ratio(ak, mk, lower)} | {ratio(qk, tk, lower)} |')
        lines += [
            '',
            '## One remote operation alone (diagnostic)',
            '',
            'Measured on n1 against a queue on n0, no partner process involved: each call is one request '
            'to the owner node and its reply (process → unix socket → agent n1 → QUIC → agent n0 → '
            'channel → back). Compare with the same path in Go (gocore/agent Call, no Python, no pyext) '
            'and one mesh round trip.',
            '',
            '| operation (µs per call) | dragon_mp | gocore/agent Call 64 B (Go) | our mesh ping-pong 64 B '
            '| raw quic-go ping-pong 64 B | dragon_mp minus agent (Python, cgo, pyext) '
            '| agent minus mesh (unix socket, agent hops) |',
            '|---|---|---|---|---|---|---|',
        ]
        for label, k in (('`get_nowait()` on an empty remote queue', 'dragon.remote_get_nowait_empty'),
                         ('`put(64 B)` to a remote queue', 'dragon.remote_put_64')):
            d, a, m = self.med(k), self.med('raw.agent.pingpong.64'), self.med('raw.mesh.pingpong.64')
            d_a = f'{d - a:.1f}' if d is not None and a is not None else 'n/a'
            a_m = f'{a - m:.1f}' if a is not None and m is not None else 'n/a'
            lines.append(f"| {label} | {fmt(k)} | {fmt('raw.agent.pingpong.64')} | {fmt('raw.mesh.pingpong.64')} "
                         f"| {fmt('raw.quic.pingpong.64')} | {d_a} | {a_m} |")
        lines += [
            '',
            f"The same gocore/agent Call from a goroutine locked to its OS thread (`runtime.LockOSThread`, "
            f"as the goroutine of a cgo call from a Python thread is): {fmt('raw.agent-locked.pingpong.64')} µs "
            f"per call, vs {fmt('raw.agent.pingpong.64')} unlocked: the reply must be handed to that one "
            f"thread (a futex wake-up) instead of running on whichever thread took it off the socket.",
        ]
        if self.failures:
            lines += ['', '## Failures', '']
            lines += [f'- {f["what"]}: `{f["why"][-300:]}`' for f in self.failures]
        md = '\n'.join(lines) + '\n'
        data = {'machine': self.info, 'params': self.p, 'failures': self.failures,
                'medians': {k: self.med(k) for k in sorted(self.samples)},
                'results': {k: dict(self.meta[k], all_samples=self.samples[k]) for k in sorted(self.samples)}}
        return md, data


def main(argv):
    import argparse
    if len(argv) >= 2 and argv[0] in ('--dragon-prog', '--stdlib-main', '--stdlib-peer'):
        p = json.loads(argv[1])
        {'--dragon-prog': dragon_prog, '--stdlib-main': stdlib_main, '--stdlib-peer': stdlib_peer}[argv[0]](p)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='1 round, 3 short samples (smoke test)')
    ap.add_argument('--rounds', type=int, default=0, help='rounds (default 3, quick 1)')
    ap.add_argument('--md', help='also write the Markdown table here')
    ap.add_argument('--json', help='write everything (machine, every sample) here')
    args = ap.parse_args(argv)
    md, data = Driver(args).run()
    print(md)
    if args.md:
        with open(args.md, 'w') as f:
            f.write(md)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(data, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
