"""Tables and chart of bench/multinode.py: medians of all samples, ratios, targets."""

import statistics

MiB = 1 << 20

# Targets (issue "Many nodes, fast and exact").
RTT_MAX_VS_CONNECTION = 1.5     # dragon_mp round trip <= 1.5x stdlib Listener/Client's
BW_MIN_VS_CONNECTION = 1.0      # bandwidth >= stdlib Listener/Client's
BW_MIN_VS_RAW = 0.8             # bandwidth >= 80% of the raw data connection (the transport dragon_mp uses)
POOL_MIN_SCALING = 3.2          # 4 nodes >= 3.2x one node (80% of ideal)

SIZE = {MiB: '1 MiB', 16 * MiB: '16 MiB'}


def _fmt(d, key):
    v = d.med(key)
    if v is None:
        return 'n/a'
    s = sorted(d.samples[key])
    noisy = ''
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        half = (q[2] - q[0]) / 2
        if v and half / v > 0.10:
            noisy = f' (±{100 * half / v:.0f}%)'
    return (f'{v:.1f}' if v < 1000 else f'{v:.0f}') + noisy


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _x(r):
    return 'n/a' if r is None else (f'{r:.2f}×' if r >= 0.1 else f'{r:.3f}×')


def _ok(cond):
    return 'n/a' if cond is None else ('met' if cond else '**not met**')


def rows(d):
    """(label, value key, ratio, target, met) for every row with a target."""
    out = []
    lc = d.med('stdlib.connection_pingpong')
    for label, key in (('Queue ping-pong 64 B, queues on n0', 'dragon.queue_pingpong.n0'),
                       ("Queue ping-pong 64 B, each queue on its reader's node", 'dragon.queue_pingpong.recv'),
                       ('Pipe ping-pong 64 B', 'dragon.pipe_pingpong')):
        r = _ratio(d.med(key), lc)
        out.append((label, key, r, f'≤ {RTT_MAX_VS_CONNECTION}× Listener/Client',
                    None if r is None else r <= RTT_MAX_VS_CONNECTION))
    for size in d.p['sizes']:
        for label, key, raw in ((f'Queue {SIZE[size]}, remote put (queue on the consumer n0)',
                                 f'dragon.queue_bw.push.{size}', f'raw.tls.bulk.{size}'),
                                (f'Queue {SIZE[size]}, remote get (queue on the producer n1)',
                                 f'dragon.queue_bw.pull.{size}', f'raw.tls.bulk-sw.{size}'),
                                (f'Pipe {SIZE[size]}, remote send_bytes', f'dragon.pipe_bw.{size}',
                                 f'raw.tls.bulk.{size}')):
            r1 = _ratio(d.med(key), d.med(f'stdlib.connection_bw.{size}'))
            r2 = _ratio(d.med(key), d.med(raw))
            out.append((label + ' vs Listener/Client', key, r1, f'≥ {BW_MIN_VS_CONNECTION}×',
                        None if r1 is None else r1 >= BW_MIN_VS_CONNECTION))
            kind = 'stop-and-wait' if 'bulk-sw' in raw else 'streamed'
            out.append((label + f' vs raw data connection ({kind})', key, r2, f'≥ {BW_MIN_VS_RAW}×',
                        None if r2 is None else r2 >= BW_MIN_VS_RAW))
    r = _ratio(d.med('dragon.pool_sleep.4'), d.med('dragon.pool_sleep.1'))
    out.append(('Pool, 10 ms tasks, 4 nodes vs 1', 'dragon.pool_sleep.4', r, f'≥ {POOL_MIN_SCALING}×',
                None if r is None else r >= POOL_MIN_SCALING))
    return out


def report(d):
    info = d.info
    L = [
        '# dragon_mp across nodes: one interleaved run',
        '',
        f"Machine: {info['cpu']}, {info['usable_cpus']} usable CPUs, Linux {info['kernel']}, "
        f"Python {info['python']}, {info['go']}, quic-go {info['quic_go']}; load average "
        f"{' '.join(f'{x:.2f}' for x in info['loadavg_start'])} at start, "
        f"{' '.join(f'{x:.2f}' for x in info['loadavg_end'])} at end.",
        f"Link: {info['link']}; ping `{info['ping']}`. Every node is a network namespace of this "
        f"machine: all of them share its {info['usable_cpus']} CPUs.",
        f"dragon_mp at {info['git']}{' (+ uncommitted changes)' if info['git_dirty'] else ''}; "
        f"{info['rounds']} rounds × {d.p['samples']} samples of ~{d.p['sample_sec']} s each, "
        'implementations interleaved per group (order reversed every other round); medians of all '
        f"samples; `±x%` = half the interquartile range when above 10%; run took {info['duration_s']} s.",
        '',
        '## Targets',
        '',
        '| row | ratio | target | |',
        '|---|--:|---|---|',
    ]
    for label, key, r, target, met in rows(d):
        L.append(f'| {label} | {_x(r)} | {target} | {_ok(met)} |')
    L += [
        '',
        'Ratios: dragon_mp / baseline (times: lower is better, so ≤ is the target; rates: ≥). '
        '"Data connection": gocore/transport\'s, what dragon_mp\'s processes use between nodes (TCP, a '
        'TLS 1.3 handshake with the run\'s CA, then AES-GCM records keyed by it), driven from Go by '
        'bench/netbase with no Python: the best this link and these CPUs give that transport.',
        '',
        '## Round trip, 64 B (µs, lower is better)',
        '',
        '| workload | dragon_mp | stdlib Listener/Client | stdlib manager Queue | Python TCP | '
        'data connection (Go) | crypto/tls (Go) | quic-go (Go) | TCP (Go) | gocore/agent call (Go) |',
        '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ]
    raw = ' | '.join(_fmt(d, k) for k in ('stdlib.connection_pingpong', 'stdlib.manager_queue_pingpong',
                                          'raw.tcp-py.pingpong.64', 'raw.tls.pingpong.64',
                                          'raw.gotls.pingpong.64', 'raw.quic.pingpong.64', 'raw.tcp.pingpong.64',
                                          'raw.agent.pingpong.64'))
    for label, key in (('Queue, both queues on n0 (the child: remote get, remote put)', 'dragon.queue_pingpong.n0'),
                       ("Queue, each on its reader's node (every put remote)", 'dragon.queue_pingpong.recv'),
                       ('Pipe made on n0 (the child: remote send and recv)', 'dragon.pipe_pingpong')):
        L.append(f'| {label} | {_fmt(d, key)} | {raw} |')
    L += [
        '',
        '## Bandwidth (MB/s, higher is better)',
        '',
        '| workload | dragon_mp | stdlib Listener/Client | stdlib manager Queue | Python TCP | '
        'data connection streamed (Go) | data connection stop-and-wait (Go) | crypto/tls streamed (Go) | '
        'quic-go streamed (Go) | TCP streamed (Go) | gocore/agent posts (Go) |',
        '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ]
    for size in d.p['sizes']:
        raw = ' | '.join(_fmt(d, k) for k in (f'stdlib.connection_bw.{size}', f'stdlib.manager_queue_bw.{size}',
                                              f'raw.tcp-py.bulk.{size}', f'raw.tls.bulk.{size}',
                                              f'raw.tls.bulk-sw.{size}', f'raw.gotls.bulk.{size}',
                                              f'raw.quic.bulk.{size}',
                                              f'raw.tcp.bulk.{size}', f'raw.agent.bulk.{size}'))
        for label, key in ((f'Queue {SIZE[size]}, queue on the consumer n0 (remote puts)', f'dragon.queue_bw.push.{size}'),
                           (f'Queue {SIZE[size]}, queue on the producer n1 (remote gets)', f'dragon.queue_bw.pull.{size}'),
                           (f'Pipe {SIZE[size]}, child on n1 sends', f'dragon.pipe_bw.{size}')):
            L.append(f'| {label} | {_fmt(d, key)} | {raw} |')
    base = d.med('dragon.pool_sleep.1')
    L += [
        '',
        '## Pool over 1, 2 and 4 nodes (2 workers each)',
        '',
        '`apply_async` of 2,000 tasks that sleep 10 ms (the nodes share this machine\'s CPUs, so sleeping '
        'tasks measure the runtime\'s dispatch, not the CPU); `imap_unordered` of tasks returning 1 MiB.',
        '',
        '| nodes | sleeping tasks (tasks/s) | vs 1 node (ideal: nodes) | 1 MiB results (MB/s) |',
        '|--:|--:|--:|--:|',
    ]
    for k in (1, 2, 4):
        L.append(f'| {k} | {_fmt(d, f"dragon.pool_sleep.{k}")} | '
                 f'{_x(_ratio(d.med(f"dragon.pool_sleep.{k}"), base))} | {_fmt(d, f"dragon.pool_mib_results.{k}")} |')
    L += [
        '',
        '## Bring-up and teardown (s)',
        '',
        'Bring-up: from starting `dragon --hostfile` (ssh to every other node, agents, mesh) to the first '
        'line of the program; teardown: from its last line to the launcher\'s exit (every node\'s '
        'processes and memory gone).',
        '',
        '| nodes | bring-up | teardown |',
        '|--:|--:|--:|',
    ]
    for n in info['bringup_sizes']:
        L.append(f'| {n} | {_fmt(d, f"bringup.{n}")} | {_fmt(d, f"teardown.{n}")} |')
    if d.failures:
        L += ['', '## Failures', '']
        L += [f'- {f["what"]}: `{f["why"][-300:]}`' for f in d.failures]
    md = '\n'.join(L) + '\n'
    data = {'machine': info, 'params': d.p, 'failures': d.failures,
            'targets': [{'row': label, 'key': key, 'ratio': r, 'target': t, 'met': m}
                        for label, key, r, t, m in rows(d)],
            'medians': {k: d.med(k) for k in sorted(d.samples)},
            'samples': {k: {'unit': d.units[k], 'all': d.samples[k]} for k in sorted(d.samples)}}
    return md, data


def chart(d, path):
    """Each target row: how far past (>1) or short of (<1) its target dragon_mp is."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('note: matplotlib is not installed, no chart written (pip install matplotlib)')
        return False
    labels, values = [], []
    for label, key, r, target, met in rows(d):
        if r is None:
            continue
        limit = float(target.split()[1].rstrip('×'))
        labels.append(label)
        values.append(limit / r if target.startswith('≤') else r / limit)
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(labels) + 1.6))
    colors = ['tab:green' if v >= 1 else 'tab:red' for v in values]
    ax.barh(range(len(labels)), values, color=colors)
    ax.axvline(1.0, color='black', linewidth=1)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('dragon_mp against its target (1 = exactly the target; > 1 better)')
    ax.set_title(f"dragon_mp across nodes (two network namespaces, {d.info['usable_cpus']} CPUs), "
                 f"git {d.info['git']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True
