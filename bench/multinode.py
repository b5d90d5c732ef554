"""Cross-node benchmarks, one interleaved run: dragon_mp between hosts against what a user has
without it (stdlib's Listener/Client and managers over TCP, plain Python sockets) and the raw
transports (bench/netbase, Go: plain TCP, crypto/tls over TCP, dragon_mp's data connection (TLS 1.3
handshake, then its own records), plain quic-go, and gocore/agent's whole remote-operation path).

    sudo python bench/multinode.py                 # full run (~10 minutes)
    sudo python bench/multinode.py --quick         # smoke test
    sudo python bench/multinode.py --md bench/results/multinode.md --json bench/results/multinode.json \\
                                   --png bench/results/multinode.png

Needs root, iproute2, openssh-server/-client and Go (the driver builds bench/netbase); matplotlib for
--png. The hosts are network namespaces n0..n{N-1} joined by veth pairs and a bridge (tests/cluster.py)
with an sshd each; dragon_mp runs under the real launcher (`dragon --hostfile ... --launch 'ssh -F cfg
{host} {command}'`) with the real agents. Groups:

- lat, bw: n0 <-> n1, every implementation interleaved per round (order reversed every other round);
- pool: a Pool of 2 workers per node on 1, 2 and 4 nodes (sleeping tasks, 1 MiB results);
- bringup: the launcher's bring-up and teardown for 1, 2, 4, 8 and 16 nodes.

The tables go to stdout, progress to stderr. See bench/README.md, "Across nodes".
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROGS = os.path.join(HERE, 'multinode_progs.py')
MiB = 1 << 20


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_bench(text):
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith('BENCH ')]


class Driver:
    IMPLS = ('dragon', 'stdlib', 'tcp-py', 'tcp', 'gotls', 'tls', 'quic', 'agent')

    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.p = {'samples': 3 if args.quick else 5, 'sample_sec': 0.05 if args.quick else 0.2,
                  'sizes': [MiB, 16 * MiB]}
        self.samples = {}        # key -> list of samples (all rounds)
        self.units = {}
        self.failures = []
        self.timeout = 180 if args.quick else 400

    def add(self, results):
        for r in results:
            self.samples.setdefault(r['key'], []).extend(r['samples'])
            self.units[r['key']] = r['unit']

    def fail(self, what, why):
        why = (why or '').strip()[-1500:]
        log(f'  FAILED {what}: {why}')
        self.failures.append({'what': what, 'why': why})

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(('DRAGON_MP_', 'SLURM_'))}
        env['PYTHONUNBUFFERED'] = '1'
        env['PYTHONPATH'] = os.pathsep.join([ROOT] + [x for x in env.get('PYTHONPATH', '').split(os.pathsep) if x])
        return env

    def dragon(self, hosts, *argv, timeout=None):
        c = self.c
        hostfile = os.path.join(self.tmp, f'hosts{len(hosts)}')
        with open(hostfile, 'w') as f:
            f.write('\n'.join(hosts) + '\n')
        cmd = [sys.executable, '-m', 'dragon_mp.launcher', '--hostfile', hostfile,
               '--launch', f'ssh -F {c.ssh_config} {{host}} {{command}}', PROGS, *argv]
        return c.run(0, cmd, timeout=timeout or self.timeout, cwd=ROOT, env=self.env())

    # implementations -------------------------------------------------------------------------

    def run_dragon(self, group, rnd):
        p = dict(self.p, groups=[group], peer='n1')
        t0 = time.monotonic()
        try:
            r = self.dragon(self.c.hosts[:2], '--dragon-prog', json.dumps(p))
        except subprocess.TimeoutExpired as e:
            return self.fail(f'dragon {group} round {rnd}', repr(e))
        res = parse_bench(r.stdout)
        if r.returncode != 0 or not res:
            self.fail(f'dragon {group} round {rnd}', f'exit {r.returncode}\n{r.stderr}')
        self.add(res)
        log(f'  dragon_mp {group}: {time.monotonic() - t0:.1f} s')

    def run_pair(self, name, main_mode, peer_mode, group, rnd, ports):
        """A main on n0 that prints LISTEN <ports> and measures, and a peer on n1."""
        c = self.c
        p = dict(self.p, groups=[group], ip=c.ips[0], authkey=os.urandom(16).hex())
        t0 = time.monotonic()
        main = c.popen(0, [sys.executable, PROGS, main_mode, json.dumps(p)], cwd=ROOT, env=self.env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peer = None
        try:
            line = main.stdout.readline().split()
            if len(line) != 1 + len(ports) or line[0] != 'LISTEN':
                main.wait(10)
                return self.fail(f'{name} {group} round {rnd}', main.stderr.read())
            pp = dict(p, **{k: int(v) for k, v in zip(ports, line[1:])})
            peer = c.popen(1, [sys.executable, PROGS, peer_mode, json.dumps(pp)], cwd=ROOT, env=self.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = main.communicate(timeout=self.timeout)
            pout, perr = peer.communicate(timeout=30)
            res = parse_bench(out)
            if main.returncode != 0 or peer.returncode != 0 or not res:
                self.fail(f'{name} {group} round {rnd}', f'main {main.returncode}: {err}\npeer {peer.returncode}: {perr}')
            self.add(res)
        except subprocess.TimeoutExpired:
            self.fail(f'{name} {group} round {rnd}', 'timed out')
        finally:
            for proc in (main, peer):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        log(f'  {name} {group}: {time.monotonic() - t0:.1f} s')

    def run_netbase(self, proto, group, rnd):
        c = self.c
        tests = [('pingpong', 64)] if group == 'lat' else \
            [(t, s) for s in self.p['sizes'] for t in ('bulk', 'bulk-sw')]
        t0 = time.monotonic()
        for test, size in tests:
            srv = c.popen(1, [self.netbase, 'serve', '-proto', proto, '-listen', f'{c.ips[1]}:0',
                              '-id', os.path.join(self.tmp, 'node2.json')],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                line = srv.stdout.readline().split()
                if len(line) != 2 or line[0] != 'ADDR':
                    self.fail(f'netbase {proto} serve', srv.stderr.read() if srv.poll() is not None else str(line))
                    continue
                r = c.run(0, [self.netbase, 'run', '-proto', proto, '-connect', line[1], '-test', test,
                              '-size', str(size), '-samples', str(self.p['samples']),
                              '-sample-sec', str(self.p['sample_sec']),
                              '-id', os.path.join(self.tmp, 'node1.json')], timeout=self.timeout)
                if r.returncode != 0:
                    self.fail(f'netbase {proto} {test} {size} round {rnd}', r.stderr)
                    continue
                res = json.loads(r.stdout.strip().splitlines()[-1])
                res['key'] = f'raw.{proto}.{test}.{size}'
                self.add([res])
            finally:
                srv.stdin.close()
                try:
                    srv.wait(5)
                except subprocess.TimeoutExpired:
                    srv.kill()
                    srv.wait()
        log(f'  netbase {proto} {group}: {time.monotonic() - t0:.1f} s')

    def run_pool(self, k, rnd):
        p = {'samples': 2 if self.quick else 3, 'tasks': 400 if self.quick else 2000,
             'results': 100 if self.quick else 400}
        t0 = time.monotonic()
        r = self.dragon(self.c.hosts[:k], '--pool-prog', json.dumps(p))
        res = parse_bench(r.stdout)
        if r.returncode != 0 or not res:
            self.fail(f'pool {k} nodes round {rnd}', f'exit {r.returncode}\n{r.stderr}')
        self.add(res)
        log(f'  pool on {k} nodes: {time.monotonic() - t0:.1f} s')

    def run_bringup(self, n, rnd):
        t0 = time.time()
        r = self.dragon(self.c.hosts[:n], '--hello')
        t1 = time.time()
        marks = dict(line.split() for line in r.stdout.splitlines() if line.startswith(('START', 'END')))
        if r.returncode != 0 or set(marks) != {'START', 'END'}:
            return self.fail(f'bring-up {n} nodes round {rnd}', f'exit {r.returncode}\n{r.stderr}')
        self.add([{'key': f'bringup.{n}', 'unit': 's', 'samples': [float(marks['START']) - t0]},
                  {'key': f'teardown.{n}', 'unit': 's', 'samples': [t1 - float(marks['END'])]}])
        log(f'  {n} nodes: bring-up {float(marks["START"]) - t0:.2f} s, teardown {t1 - float(marks["END"]):.2f} s')

    # the run -----------------------------------------------------------------------------------

    def run(self):
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
        sizes = [1, 2, 4] if self.quick else [1, 2, 4, 8, 16]
        t_start = time.monotonic()
        with cl.NetnsCluster(max(sizes), prefix='dmb') as c:
            self.c = c
            c.start_sshd()
            self.info = machine(c)
            log(f"machine: {self.info['cpu']}, {self.info['usable_cpus']} cpus, load {self.info['loadavg_start']}")
            rounds = self.args.rounds or (1 if self.quick else 3)
            for rnd in range(rounds):
                order = list(self.IMPLS) if rnd % 2 == 0 else list(reversed(self.IMPLS))
                for group in ('lat', 'bw'):
                    log(f'round {rnd + 1}/{rounds}, {group}: {" ".join(order)}')
                    for impl in order:
                        if impl == 'dragon':
                            self.run_dragon(group, rnd)
                        elif impl == 'stdlib':
                            self.run_pair('stdlib', '--stdlib-main', '--stdlib-peer', group, rnd,
                                          ('mgr_port', 'conn_port'))
                        elif impl == 'tcp-py':
                            self.run_pair('tcp-py', '--tcp-main', '--tcp-peer', group, rnd, ('port',))
                        else:
                            self.run_netbase(impl, group, rnd)
                log(f'round {rnd + 1}/{rounds}, pool')
                for k in ((1, 2, 4) if rnd % 2 == 0 else (4, 2, 1)):
                    self.run_pool(k, rnd)
                log(f'round {rnd + 1}/{rounds}, bring-up')
                for n in (sizes if rnd % 2 == 0 else sizes[::-1]):
                    self.run_bringup(n, rnd)
            self.info['loadavg_end'] = os.getloadavg()
            self.info['duration_s'] = round(time.monotonic() - t_start, 1)
            self.info['rounds'] = rounds
            self.info['bringup_sizes'] = sizes
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)
        from multinode_report import report
        return report(self)

    def med(self, key):
        s = self.samples.get(key)
        return statistics.median(s) if s else None


def sh(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 else ''
    except (OSError, subprocess.SubprocessError):
        return ''


def machine(c):
    import platform
    cpu = ''
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), '')
    except OSError:
        pass
    link = sh(['ip', '-n', c.namespaces[0], '-d', '-o', 'link', 'show', 'eth0'])
    mtu = link.split(' mtu ', 1)[1].split()[0] if ' mtu ' in link else '?'
    ping = c.run(0, ['ping', '-q', '-c', '20', '-i', '0.01', c.ips[1]]).stdout
    quic = ''
    with open(os.path.join(ROOT, 'go.mod')) as f:
        quic = next((l.split()[1] for l in f if 'quic-go/quic-go ' in l), '')
    return {
        'cpu': cpu, 'usable_cpus': len(os.sched_getaffinity(0)), 'kernel': platform.release(),
        'python': platform.python_version(), 'go': sh(['go', 'version']), 'quic_go': quic,
        'loadavg_start': os.getloadavg(), 'git': sh(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD']),
        'git_dirty': bool(sh(['git', '-C', ROOT, 'status', '--porcelain', '-uno'])),
        'link': f'{c.ips[0]} (n0 eth0, veth) -> bridge {c.bridge} -> (veth, n1 eth0) {c.ips[1]}; MTU {mtu}',
        'ping': ping.strip().splitlines()[-1] if ping.strip() else '',
    }


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='1 round, short samples, up to 4 nodes (smoke test)')
    ap.add_argument('--rounds', type=int, default=0, help='rounds (default 3, quick 1)')
    ap.add_argument('--md', help='also write the Markdown tables here')
    ap.add_argument('--json', help='write everything (machine, every sample) here')
    ap.add_argument('--png', help='a chart of the ratios against the targets (needs matplotlib)')
    args = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    d = Driver(args)
    md, data = d.run()
    print(md)
    if args.md:
        with open(args.md, 'w') as f:
            f.write(md)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(data, f, indent=1)
    if args.png:
        from multinode_report import chart
        if chart(d, args.png):
            log(f'wrote {args.png}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
