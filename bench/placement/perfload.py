#!/usr/bin/env python3
"""Placement API benchmark reproducing upstream OpenStack Placement's perfload jobs.

Standard library only (Python >= 3.9). Works against any server speaking the
Placement HTTP API under a base URL, e.g. upstream placement at
http://127.0.0.1:8778 or oxistack at http://127.0.0.1:PORT/placement.

Scenarios (see README.md for the upstream sources they are taken from):

  flat    upstream gate/perfload-runner.sh + placeload 0.3.0: 1,010 x SCALE root
          providers (VCPU 32 / MEMORY_MB 8192 / DISK_GB 8192), aggregates and
          traits rotating; query
          resources=VCPU:1,DISK_GB:10,MEMORY_MB:256&member_of=<A>&required=HW_CPU_X86_AVX2
  nested  upstream gate/perfload-nested-runner.sh + gate/gabbits/nested-perfload.yaml:
          1,000 x SCALE trees of 7 providers; query
          resources=DISK_GB:10&required=COMPUTE_VOLUME_MULTI_ATTACH
          &resources_COMPUTE=VCPU:1,MEMORY_MB:256&required_COMPUTE=CUSTOM_FOO
          &resources_FPGA=FPGA:1&group_policy=none&same_subtree=_COMPUTE,_FPGA
          (2 candidates per tree)

Phases: load (timed) -> first query + full validation of the candidates ->
sequential latency (N queries, with upstream-style allocation writes in between)
-> concurrency-C pure reads (= upstream's `ab -c 10 -n 500`) -> concurrency-C
mixed reads + allocation writes -> final candidate count check -> optional
cleanup.

An allocation write is what upstream's write_allocation does: GET the query with
&limit=5, take allocation_requests[0], add consumer_generation null (new
consumer), fresh project/user ids and consumer_type TEST (microversion >= 1.38),
PUT it to /allocations/<new uuid>. A 409 is retried with a fresh GET (at most 3
attempts) and counted as a conflict.

Exit status: 0 ok, 1 any failed request / wrong count / truncated phase, 2 usage.
"""

import argparse
import concurrent.futures as cf
import http.client
import itertools
import json
import os
import resource
import socket
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

# upstream placeload 0.3.0 constants
AGGREGATES = [
    '14a5c8a3-5a99-4e8f-88be-00d85fcb1c17',
    '66d98e7c-3c25-485d-a0dc-1cea651884de',
    'a59dbb28-fd98-4c6e-9ec5-ae5f3d04b0aa',
]
AGG_CHUNKS = [AGGREGATES[0:1], AGGREGATES[0:2], AGGREGATES[0:3]]
TRAITS = ['HW_CPU_X86_AVX2', 'HW_CPU_X86_SSE2', 'STORAGE_DISK_SSD']
TRAIT_CHUNKS = [TRAITS[0:1], TRAITS[0:2], TRAITS[0:3]]
FLAT_INVENTORY = {
    'MEMORY_MB': {'total': 8192, 'min_unit': 128, 'max_unit': 8192},
    'DISK_GB': {'total': 8192, 'min_unit': 5, 'max_unit': 8192},
    'VCPU': {'total': 32, 'min_unit': 1, 'max_unit': 16},
}
FLAT_QUERY = ('resources=VCPU:1,DISK_GB:10,MEMORY_MB:256&member_of=%s'
              '&required=HW_CPU_X86_AVX2' % AGGREGATES[0])
FLAT_PREHEAT = 10          # upstream runs `placeload URL 10` before `placeload URL 1000`
FLAT_PER_SCALE = 1010
NESTED_TREES_PER_SCALE = 1000
NESTED_QUERY = ('resources=DISK_GB:10&required=COMPUTE_VOLUME_MULTI_ATTACH'
                '&resources_COMPUTE=VCPU:1,MEMORY_MB:256&required_COMPUTE=CUSTOM_FOO'
                '&resources_FPGA=FPGA:1&group_policy=none&same_subtree=_COMPUTE,_FPGA')
# expected resources of one candidate
FLAT_WANT = {'VCPU': 1, 'DISK_GB': 10, 'MEMORY_MB': 256}
NESTED_WANT = {'DISK_GB': 10, 'VCPU': 1, 'MEMORY_MB': 256, 'FPGA': 1}

MAX_ERROR_SAMPLES = 20


def mv_tuple(s):
    a, b = s.split('.')
    return int(a), int(b)


class RequestFailed(Exception):
    pass


class Resp:
    __slots__ = ('status', 'mv', 'body', 'elapsed')

    def __init__(self, status, mv, body, elapsed):
        self.status, self.mv, self.body, self.elapsed = status, mv, body, elapsed

    def json(self):
        return json.loads(self.body)


class Stats:
    """Thread-safe error bookkeeping shared by all phases."""

    def __init__(self):
        self.lock = threading.Lock()
        self.errors = 0
        self.samples = []

    def error(self, phase, what):
        with self.lock:
            self.errors += 1
            if len(self.samples) < MAX_ERROR_SAMPLES:
                self.samples.append('%s: %s' % (phase, what))


class Client:
    """Minimal keep-alive HTTP client, one connection per thread."""

    def __init__(self, base, token, microversion, timeout):
        p = urlsplit(base)
        if p.scheme != 'http' or not p.hostname:
            raise SystemExit('--url must be http://HOST[:PORT][/prefix]')
        self.host, self.port = p.hostname, p.port or 80
        self.prefix = p.path.rstrip('/')
        self.timeout = timeout
        self.mv = microversion
        self.want_mv = 'placement %s' % microversion
        self.headers = {
            'x-auth-token': token,
            'openstack-api-version': self.want_mv,
            'accept': 'application/json',
        }
        self.tl = threading.local()

    def _conn(self):
        c = getattr(self.tl, 'c', None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.tl.c = c
        return c

    def _drop(self):
        c = getattr(self.tl, 'c', None)
        if c is not None:
            c.close()
        self.tl.c = None

    def req(self, method, path, body=None):
        data = None
        hdrs = self.headers
        if body is not None:
            data = json.dumps(body).encode()
            hdrs = dict(hdrs)
            hdrs['content-type'] = 'application/json'
        for attempt in (0, 1):
            c = self._conn()
            reused = c.sock is not None
            t0 = time.perf_counter()
            try:
                c.request(method, self.prefix + path, body=data, headers=hdrs)
                r = c.getresponse()
                raw = r.read()
                dt = time.perf_counter() - t0
                if r.will_close:
                    self._drop()
                return Resp(r.status, r.getheader('openstack-api-version'), raw, dt)
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError, http.client.BadStatusLine):
                self._drop()
                # a kept-alive connection closed by the server while idle:
                # the request never reached it, retry once on a new one
                if attempt == 0 and reused:
                    continue
                raise
            except BaseException:
                self._drop()
                raise
        raise AssertionError('unreachable')

    def call(self, method, path, body=None, ok=(200,)):
        try:
            r = self.req(method, path, body)
        except (OSError, http.client.HTTPException) as e:
            raise RequestFailed('%s %s: %s: %s' % (method, path, type(e).__name__, e))
        if r.status not in ok:
            raise RequestFailed('%s %s: HTTP %d %s' % (
                method, path, r.status, r.body[:300].decode('utf-8', 'replace')))
        return r


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def summarize(lat):
    s = sorted(lat)
    if not s:
        return {'n': 0}
    return {'n': len(s), 'mean_s': sum(s) / len(s), 'p50_s': pct(s, 50),
            'p95_s': pct(s, 95), 'p99_s': pct(s, 99), 'min_s': s[0], 'max_s': s[-1]}


class RssSampler(threading.Thread):
    """Peak and current RSS (sum of VmRSS over PID and its descendants)."""

    def __init__(self, pid, interval=0.5):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.last = 0
        self.stop_ev = threading.Event()

    @staticmethod
    def tree_pids(root):
        children = {}
        for d in os.listdir('/proc'):
            if not d.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % d) as f:
                    st = f.read()
                ppid = int(st[st.rindex(')') + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
        todo, seen = [root], []
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.append(p)
            todo.extend(children.get(p, ()))
        return seen

    @classmethod
    def tree_rss_kib(cls, root):
        total = 0
        for p in cls.tree_pids(root):
            try:
                with open('/proc/%d/status' % p) as f:
                    for line in f:
                        if line.startswith('VmRSS:'):
                            total += int(line.split()[1])
                            break
            except OSError:
                pass
        return total

    def sample(self):
        v = self.tree_rss_kib(self.pid)
        self.last = v
        self.peak = max(self.peak, v)
        return v

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(self.interval)


CLK_TCK = os.sysconf('SC_CLK_TCK')


class ServerCpu:
    """CPU seconds (user+system) used by the server pid and its descendants.

    On a shared machine wall-clock latency depends on what else runs; the
    server's own CPU time per request is much less sensitive to that."""

    def __init__(self, pid):
        self.pid = pid
        self.pids = RssSampler.tree_pids(pid) if pid else []

    def refresh(self):
        if self.pid:
            self.pids = RssSampler.tree_pids(self.pid)

    def now(self):
        if not self.pid:
            return None
        t = 0
        for p in self.pids:
            try:
                with open('/proc/%d/stat' % p) as f:
                    st = f.read()
                fields = st[st.rindex(')') + 2:].split()
                t += int(fields[11]) + int(fields[12])   # utime, stime
            except (OSError, ValueError, IndexError):
                pass
        return t / CLK_TCK


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def log(msg):
    print('[perfload %s] %s' % (time.strftime('%H:%M:%S'), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- loading

def flat_provider(cl, i):
    """upstream placeload: POST rp, PUT inventories, PUT aggregates, PUT traits."""
    uu = str(uuid.uuid4())
    r = cl.call('POST', '/resource_providers', {'uuid': uu, 'name': uu})
    gen = r.json().get('generation', 0) if r.body else 0
    r = cl.call('PUT', '/resource_providers/%s/inventories' % uu,
                {'resource_provider_generation': gen, 'inventories': FLAT_INVENTORY})
    gen = r.json()['resource_provider_generation']
    r = cl.call('PUT', '/resource_providers/%s/aggregates' % uu,
                {'resource_provider_generation': gen, 'aggregates': AGG_CHUNKS[i % 3]})
    gen = r.json()['resource_provider_generation']
    cl.call('PUT', '/resource_providers/%s/traits' % uu,
            {'resource_provider_generation': gen, 'traits': TRAIT_CHUNKS[i % 3]})
    return {'rps': [uu], 'requests': 4}


NESTED_TOPOLOGY = [
    # role, name prefix, parent role, inventories, traits
    ('cn1', '', None, {'DISK_GB': {'total': 20480}}, ['COMPUTE_VOLUME_MULTI_ATTACH']),
    ('n0', 'numa 0-', 'cn1', {'VCPU': {'total': 4, 'reserved': 2},
                              'MEMORY_MB': {'total': 2048, 'min_unit': 512, 'step_size': 256}},
     ['HW_NUMA_ROOT']),
    ('fpga0_0', 'fpga0-0-', 'n0', {'FPGA': {'total': 1}}, None),
    ('pgpu0_0', 'pgpu0-0-', 'n0', {'VGPU': {'total': 8}}, None),
    ('n1', 'numa 1-', 'cn1', {'VCPU': {'total': 4},
                              'MEMORY_MB': {'total': 2048, 'min_unit': 256, 'max_unit': 1024}},
     ['HW_NUMA_ROOT', 'CUSTOM_FOO']),
    ('fpga1_0', 'fpga1-0-', 'n1', {'FPGA': {'total': 1}}, None),
    ('fpga1_1', 'fpga1-1-', 'n1', {'FPGA': {'total': 1}}, None),
]


def nested_tree(cl, i):
    """upstream gate/gabbits/nested-perfload.yaml, in the gabbit's order."""
    ids = {}
    n = 0
    for role, prefix, parent, inv, traits in NESTED_TOPOLOGY:
        uu = str(uuid.uuid4())
        ids[role] = uu
        body = {'uuid': uu, 'name': prefix + uu}
        if parent:
            body['parent_provider_uuid'] = ids[parent]
        cl.call('POST', '/resource_providers', body)
        r = cl.call('PUT', '/resource_providers/%s/inventories' % uu,
                    {'resource_provider_generation': 0, 'inventories': inv})
        n += 2
        if traits:
            gen = r.json()['resource_provider_generation']
            cl.call('PUT', '/resource_providers/%s/traits' % uu,
                    {'resource_provider_generation': gen, 'traits': traits})
            n += 1
    return {'tree': ids, 'requests': n}


def run_pool(fn, items, concurrency, deadline, stats, phase):
    """Run fn(item) on a bounded thread pool; returns (results, skipped)."""
    results, skipped = [], 0
    t_end = time.monotonic() + deadline
    it = iter(items)
    lock = threading.Lock()

    def worker():
        nonlocal skipped
        while True:
            with lock:
                item = next(it, None)
                if item is None:
                    return
                if time.monotonic() > t_end:
                    skipped += 1
                    continue
            try:
                res = fn(item)
            except RequestFailed as e:
                stats.error(phase, str(e))
                continue
            with lock:
                results.append(res)

    with cf.ThreadPoolExecutor(max_workers=concurrency) as ex:
        futs = [ex.submit(worker) for _ in range(concurrency)]
        for f in futs:
            f.result()
    return results, skipped


# ---------------------------------------------------------------- queries

class Scenario:
    def __init__(self, args, cl, stats):
        self.args, self.cl, self.stats = args, cl, stats
        self.name = args.scenario
        self.query = FLAT_QUERY if self.name == 'flat' else NESTED_QUERY
        self.path = '/allocation_candidates?' + self.query
        self.write_path = self.path + '&limit=5'
        self.baseline = 0
        self.rp_role = {}          # rp uuid -> (tree index, role) or (i, 'flat')
        self.new_candidates = 0
        self.consumers = []
        self.consumers_lock = threading.Lock()
        self.writes_ok = 0
        self.write_conflicts = 0
        self.mv_ok = True
        self.created_rps = []      # deletion order: leaves first
        self.check_mappings = mv_tuple(cl.mv) >= (1, 34)
        self.scpu = ServerCpu(args.pid)

    # -- counting / validation
    def count(self, resp):
        d = resp.json()
        return len(d['allocation_requests']), len(d['provider_summaries']), d

    def check_mv(self, resp, phase):
        if resp.mv != self.cl.want_mv:
            self.mv_ok = False
            self.stats.error(phase, 'response openstack-api-version %r, wanted %r'
                             % (resp.mv, self.cl.want_mv))

    def validate(self, d):
        """Check every allocation request of the first full response."""
        want = FLAT_WANT if self.name == 'flat' else NESTED_WANT
        problems, seen = [], set()
        for ar in d['allocation_requests']:
            allocs = ar['allocations']
            totals, key = {}, []
            for rp, a in allocs.items():
                for rc, amt in a['resources'].items():
                    totals[rc] = totals.get(rc, 0) + amt
                key.append((rp, tuple(sorted(a['resources'].items()))))
            key = tuple(sorted(key))
            if key in seen:
                problems.append('duplicate allocation request %s' % (key,))
            seen.add(key)
            if totals != want:
                problems.append('resources %s != %s' % (totals, want))
                continue
            if self.baseline:
                continue  # foreign providers present: only check sums
            maps = ar.get('mappings')
            if self.name == 'flat':
                if len(allocs) != 1 or next(iter(allocs)) not in self.rp_role:
                    problems.append('unexpected providers %s' % list(allocs))
                elif self.check_mappings and maps != {'': list(allocs)}:
                    problems.append('mappings %s' % maps)
            else:
                roles = {}
                for rp, a in allocs.items():
                    t, role = self.rp_role.get(rp, (None, None))
                    for rc in a['resources']:
                        roles[rc] = (t, role)
                trees = {t for t, _ in roles.values()}
                ok = (len(trees) == 1 and None not in trees
                      and roles['DISK_GB'][1] == 'cn1'
                      and roles['VCPU'][1] == 'n1' and roles['MEMORY_MB'][1] == 'n1'
                      and roles['FPGA'][1] in ('fpga1_0', 'fpga1_1'))
                if not ok:
                    problems.append('wrong placement %s' % roles)
                elif self.check_mappings:
                    by_rc = {}
                    for rp, a in allocs.items():
                        for rc in a['resources']:
                            by_rc[rc] = rp
                    want_maps = {'': [by_rc['DISK_GB']], '_COMPUTE': [by_rc['VCPU']],
                                 '_FPGA': [by_rc['FPGA']]}
                    if maps != want_maps:
                        problems.append('mappings %s, expected %s' % (maps, want_maps))
            if len(problems) > 5:
                break
        return problems

    def expected_now(self):
        """(lo, hi) bounds of the candidate count given the writes so far."""
        full = self.baseline + self.new_candidates
        if self.name == 'nested':
            # every successful write consumes one of the 2 FPGAs under a numa1
            return full - self.writes_ok, full - self.writes_ok
        # flat: a provider drops out after 32 claims (VCPU 32, MEMORY 32*256)
        return full - self.writes_ok // 32, full

    # -- one allocation write, as upstream's write_allocation
    def write(self, phase):
        """Returns (ok, elapsed_s, attempts)."""
        t0 = time.perf_counter()
        for attempt in range(1, 4):
            try:
                r = self.cl.call('GET', self.write_path)
            except RequestFailed as e:
                self.stats.error(phase, 'write GET: %s' % e)
                return False, time.perf_counter() - t0, attempt
            ars = r.json()['allocation_requests']
            if not ars:
                self.stats.error(phase, 'write GET: no allocation requests left')
                return False, time.perf_counter() - t0, attempt
            body = dict(ars[0])
            body.update({'consumer_generation': None,
                         'project_id': str(uuid.uuid4()),
                         'user_id': str(uuid.uuid4())})
            if mv_tuple(self.cl.mv) >= (1, 38):
                body['consumer_type'] = 'TEST'
            consumer = str(uuid.uuid4())
            try:
                r = self.cl.req('PUT', '/allocations/%s' % consumer, body)
            except (OSError, http.client.HTTPException) as e:
                self.stats.error(phase, 'write PUT: %s: %s' % (type(e).__name__, e))
                return False, time.perf_counter() - t0, attempt
            if r.status == 204:
                with self.consumers_lock:
                    self.consumers.append(consumer)
                    self.writes_ok += 1
                return True, time.perf_counter() - t0, attempt
            if r.status == 409 and attempt < 3:
                with self.consumers_lock:
                    self.write_conflicts += 1
                continue
            self.stats.error(phase, 'write PUT /allocations/%s: HTTP %d %s' % (
                consumer, r.status, r.body[:300].decode('utf-8', 'replace')))
            return False, time.perf_counter() - t0, attempt
        return False, time.perf_counter() - t0, 3


def server_cpu(sc, out, s0, requests):
    s1 = sc.scpu.now()
    if s0 is None or s1 is None:
        return
    out['server_cpu_s'] = s1 - s0
    out['server_cpu_per_request_s'] = (s1 - s0) / requests if requests else None
    wall = out.get('wall_s') or out.get('seconds')
    if wall:
        out['server_cpu_utilisation'] = (s1 - s0) / wall


def phase_load(sc, args, stats, res):
    cl = sc.cl
    t0 = time.perf_counter()
    c0 = cpu_s()
    la0 = loadavg()
    s0 = sc.scpu.now()
    if sc.name == 'flat':
        n = args.units or FLAT_PER_SCALE * args.scale
        # preheat (upstream: `placeload URL 10` first, to create the aggregates
        # without racing, see launchpad bug 1804453)
        pre, skipped0 = run_pool(lambda i: flat_provider(cl, i), range(min(FLAT_PREHEAT, n)),
                                 1, args.load_deadline, stats, 'load')
        rest, skipped1 = run_pool(lambda i: flat_provider(cl, i), range(len(pre), n),
                                  args.load_concurrency, args.load_deadline, stats, 'load')
        done = pre + rest
        skipped = skipped0 + skipped1
        for i, d in enumerate(done):
            sc.rp_role[d['rps'][0]] = (i, 'flat')
            sc.created_rps.append(d['rps'][0])
        expected_rps = n
        sc.new_candidates = n
        created = len(done)
        requests = sum(d['requests'] for d in done)
    else:
        trees = args.units or NESTED_TREES_PER_SCALE * args.scale
        cl.call('PUT', '/traits/CUSTOM_FOO', ok=(201, 204))
        done, skipped = run_pool(lambda i: nested_tree(cl, i), range(trees),
                                 args.load_concurrency, args.load_deadline, stats, 'load')
        for t, d in enumerate(done):
            for role, uu in d['tree'].items():
                sc.rp_role[uu] = (t, role)
        # delete order: children before parents
        for role in ('fpga0_0', 'pgpu0_0', 'fpga1_0', 'fpga1_1', 'n0', 'n1', 'cn1'):
            sc.created_rps.extend(d['tree'][role] for d in done)
        expected_rps = trees * 7
        sc.new_candidates = trees * 2
        created = len(done) * 7
        requests = 1 + sum(d['requests'] for d in done)
    dt = time.perf_counter() - t0
    res['load'] = {
        'seconds': dt, 'requests': requests, 'req_per_s': requests / dt if dt else None,
        'providers_expected': expected_rps, 'providers_created': created,
        'units_skipped_deadline': skipped, 'concurrency': args.load_concurrency,
        'driver_cpu_s': cpu_s() - c0, 'loadavg_start': la0, 'loadavg_end': loadavg(),
    }
    server_cpu(sc, res['load'], s0, requests)
    if created != expected_rps:
        stats.error('load', 'created %d of %d providers' % (created, expected_rps))
    # upstream's check: count providers via GET /resource_providers
    r = cl.call('GET', '/resource_providers')
    listed = len(r.json()['resource_providers'])
    res['load']['providers_listed'] = listed
    if listed < res['preexisting_providers'] + expected_rps:
        stats.error('load', 'GET /resource_providers lists %d, expected >= %d'
                    % (listed, res['preexisting_providers'] + expected_rps))


def phase_sequential(sc, args, stats, res):
    lat, wlat, mismatches = [], [], []
    every = args.seq_write_every
    t_end = time.monotonic() + args.phase_deadline
    c0, la0 = cpu_s(), loadavg()
    sc.scpu.refresh()
    qcpu = []
    truncated = False
    for i in range(args.seq_queries):
        if time.monotonic() > t_end:
            truncated = True
            break
        q0 = sc.scpu.now()
        try:
            r = sc.cl.call('GET', sc.path)
        except RequestFailed as e:
            stats.error('sequential', str(e))
            continue
        if q0 is not None:
            qcpu.append(sc.scpu.now() - q0)
        lat.append(r.elapsed)
        sc.check_mv(r, 'sequential')
        n, _, _ = sc.count(r)
        lo, hi = sc.expected_now()
        if not lo <= n <= hi:
            mismatches.append((i, n, lo, hi))
        if every and (i + 1) % every == 0:
            ok, dt, _ = sc.write('sequential')
            if ok:
                wlat.append(dt)
    s = summarize(lat)
    s.update({'queries_planned': args.seq_queries, 'write_every': every,
              'writes_ok': len(wlat), 'write_op': summarize(wlat),
              'count_mismatches': len(mismatches), 'truncated': truncated,
              'driver_cpu_s': cpu_s() - c0, 'loadavg_start': la0, 'loadavg_end': loadavg()})
    if qcpu:
        # server CPU used while each query was in flight (clock-tick resolution)
        s['server_cpu_per_query_s'] = sum(qcpu) / len(qcpu)
    res['sequential'] = s
    for m in mismatches[:5]:
        stats.error('sequential', 'query %d: %d candidates, expected %d..%d' % m)
    if truncated:
        stats.error('sequential', 'phase deadline hit after %d queries' % len(lat))


def phase_concurrent(sc, args, stats, res, key, write_every):
    n_total, conc = args.requests, args.concurrency
    counter = itertools.count()
    lock = threading.Lock()
    rlat, wlat = [], []
    cnt = {'reads': 0, 'writes': 0, 'read_errors': 0, 'write_errors': 0,
           'skipped_deadline': 0, 'http_requests': 0}
    min_len = [None]
    t_end = time.monotonic() + args.phase_deadline

    def worker():
        while True:
            i = next(counter)
            if i >= n_total:
                return
            if time.monotonic() > t_end:
                with lock:
                    cnt['skipped_deadline'] += 1
                continue
            if write_every and (i + 1) % write_every == 0:
                ok, dt, attempts = sc.write(key)
                with lock:
                    cnt['http_requests'] += 2 * attempts
                    if ok:
                        cnt['writes'] += 1
                        wlat.append(dt)
                    else:
                        cnt['write_errors'] += 1
                continue
            try:
                r = sc.cl.call('GET', sc.path)
            except RequestFailed as e:
                stats.error(key, str(e))
                with lock:
                    cnt['read_errors'] += 1
                    cnt['http_requests'] += 1
                continue
            if r.mv != sc.cl.want_mv:
                sc.check_mv(r, key)
            with lock:
                cnt['reads'] += 1
                cnt['http_requests'] += 1
                rlat.append(r.elapsed)
                if min_len[0] is None or len(r.body) < min_len[0]:
                    min_len[0] = len(r.body)

    c0, la0 = cpu_s(), loadavg()
    sc.scpu.refresh()
    s0 = sc.scpu.now()
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=conc) as ex:
        for f in [ex.submit(worker) for _ in range(conc)]:
            f.result()
    wall = time.perf_counter() - t0
    done = cnt['reads'] + cnt['writes']
    out = dict(cnt)
    out.update({
        'requests_planned': n_total, 'concurrency': conc, 'write_every': write_every,
        'wall_s': wall, 'ops_per_s': done / wall if wall else None,
        'reads_per_s': cnt['reads'] / wall if wall else None,
        'read': summarize(rlat), 'write_op': summarize(wlat),
        'min_read_body_bytes': min_len[0],
        'driver_cpu_s': cpu_s() - c0, 'loadavg_start': la0, 'loadavg_end': loadavg(),
    })
    server_cpu(sc, out, s0, cnt['http_requests'])
    res[key] = out
    if cnt['skipped_deadline']:
        stats.error(key, 'phase deadline hit, %d requests not sent' % cnt['skipped_deadline'])


def phase_cleanup(sc, args, stats, res):
    t0 = time.perf_counter()
    cl = sc.cl

    def del_consumer(c):
        cl.call('DELETE', '/allocations/%s' % c, ok=(204, 404))

    def del_rp(u):
        cl.call('DELETE', '/resource_providers/%s' % u, ok=(204, 404))

    run_pool(del_consumer, list(sc.consumers), args.load_concurrency, args.load_deadline,
             stats, 'cleanup')
    if sc.name == 'nested':
        # children first, level by level
        per = len(sc.created_rps) // 7
        levels = [sc.created_rps[0:4 * per], sc.created_rps[4 * per:6 * per],
                  sc.created_rps[6 * per:]]
    else:
        levels = [sc.created_rps]
    for lv in levels:
        run_pool(del_rp, lv, args.load_concurrency, args.load_deadline, stats, 'cleanup')
    res['cleanup_s'] = time.perf_counter() - t0


# ---------------------------------------------------------------- report

def fmt_s(v):
    if v is None:
        return '-'
    return '%.1f ms' % (v * 1000) if v < 1 else '%.3f s' % v


def fmt_n(v, digits=1):
    return '-' if v is None else ('%.*f' % (digits, v))


def markdown(res):
    L = res.get('load', {})
    c = res.get('candidates', {})
    s = res.get('sequential', {})
    rd = res.get('c10_reads', {})
    mx = res.get('c10_mixed', {})
    rss = res.get('rss', {})
    rows = [
        ('server', '%s (%s)' % (res['label'], res['url'])),
        ('scenario / scale', '%s / %dx' % (res['scenario'], res['scale'])),
        ('microversion', res['microversion']),
        ('providers created', '%s of %s' % (L.get('providers_created'), L.get('providers_expected'))),
        ('load time', '%s (%d requests, %s req/s, c=%s)' % (
            fmt_s(L.get('seconds')), L.get('requests', 0), fmt_n(L.get('req_per_s')),
            L.get('concurrency'))),
        ('candidates after load', '%s (expected %s); provider_summaries %s' % (
            c.get('after_load'), c.get('expected_after_load'), c.get('provider_summaries'))),
        ('candidates at end', '%s (expected %s..%s after %d writes)' % (
            c.get('final'), c.get('final_expected_lo'), c.get('final_expected_hi'),
            c.get('writes_ok', 0))),
        ('first query', fmt_s(res.get('first_query_s'))),
        ('sequential query mean (n=%s)' % s.get('n'), '%s (p50 %s, p95 %s, min %s, max %s)' % (
            fmt_s(s.get('mean_s')), fmt_s(s.get('p50_s')), fmt_s(s.get('p95_s')),
            fmt_s(s.get('min_s')), fmt_s(s.get('max_s')))),
        ('sequential writes', '%s (GET limit=5 + PUT: mean %s)' % (
            s.get('writes_ok'), fmt_s(s.get('write_op', {}).get('mean_s')))),
    ]
    if s.get('server_cpu_per_query_s') is not None:
        rows.append(('server CPU per sequential query', fmt_s(s['server_cpu_per_query_s'])))
    if rd:
        rows.append(('c=%s reads, %s req (= upstream ab)' % (rd['concurrency'], rd['requests_planned']),
                     '%s req/s (mean %s, p95 %s; errors %d)' % (
                         fmt_n(rd['reads_per_s'], 2), fmt_s(rd['read'].get('mean_s')),
                         fmt_s(rd['read'].get('p95_s')), rd['read_errors'])))
    if mx:
        rows.append(('c=%s mixed, %s req, 1 write / %s' % (
            mx['concurrency'], mx['requests_planned'], mx['write_every']),
            '%s ops/s: %d reads (%s/s, mean %s, p95 %s), %d writes (mean %s), '
            '%d conflicts retried, errors %d/%d' % (
                fmt_n(mx['ops_per_s'], 2), mx['reads'], fmt_n(mx['reads_per_s'], 2),
                fmt_s(mx['read'].get('mean_s')), fmt_s(mx['read'].get('p95_s')),
                mx['writes'], fmt_s(mx['write_op'].get('mean_s')),
                mx.get('write_conflicts', 0), mx['read_errors'], mx['write_errors'])))
    for name, ph in (('load', L), ('c=10 reads', rd), ('c=10 mixed', mx)):
        if ph.get('server_cpu_s') is not None:
            rows.append(('server CPU, %s' % name, '%.1f s, %s per HTTP request, %.0f%% of one core' % (
                ph['server_cpu_s'], fmt_s(ph['server_cpu_per_request_s']),
                100 * (ph.get('server_cpu_utilisation') or 0))))
    if rss:
        rows.append(('server RSS (pid %s tree)' % rss.get('pid'),
                     'after load %.1f MiB, peak %.1f MiB, end %.1f MiB' % (
                         rss['after_load_kib'] / 1024, rss['peak_kib'] / 1024,
                         rss['end_kib'] / 1024)))
    rows.append(('load average (start -> end)', '%s -> %s' % (res['loadavg_start'], res['loadavg_end'])))
    rows.append(('errors', '%d%s' % (res['errors'], '  **FLAGGED**' if not res['ok'] else '')))
    out = ['| metric | value |', '|---|---|']
    out += ['| %s | %s |' % r for r in rows]
    return '\n'.join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--url', required=True, help='placement base URL, e.g. http://127.0.0.1:8778')
    ap.add_argument('--token', default='admin')
    ap.add_argument('--scenario', choices=('flat', 'nested'), required=True)
    ap.add_argument('--scale', type=int, default=1, help='multiply providers (flat 1010*N, nested 1000*N trees)')
    ap.add_argument('--units', type=int,
                    help='override the number of flat providers / nested trees (smoke tests)')
    ap.add_argument('--pid', type=int, help='server pid: report RSS of it and its descendants')
    ap.add_argument('--label', default='server')
    ap.add_argument('--microversion', default='1.39',
                    help='default 1.39 = "placement latest" of openstack-placement 16.0.0, as upstream perfload')
    ap.add_argument('--load-concurrency', type=int, default=8)
    ap.add_argument('--seq-queries', type=int, default=100)
    ap.add_argument('--seq-write-every', type=int,
                    help='write an allocation after every K-th sequential query '
                         '(default: flat 2, nested 10 -- upstream writes 99 allocations per 200 timed '
                         'flat queries and 10 per 22 nested ones); 0 = none')
    ap.add_argument('--requests', type=int, default=500)
    ap.add_argument('--concurrency', type=int, default=10)
    ap.add_argument('--write-every', type=int, default=10,
                    help='mixed phase: every K-th request is an allocation write (0 = pure reads)')
    ap.add_argument('--skip-pure-reads', action='store_true', help='skip the ab-equivalent read-only phase')
    ap.add_argument('--skip-mixed', action='store_true')
    ap.add_argument('--cleanup', action='store_true',
                    help='delete the allocations and providers created, at the end')
    ap.add_argument('--timeout', type=float, default=600, help='per-request timeout (s)')
    ap.add_argument('--phase-deadline', type=float, default=1800,
                    help='stop issuing requests in a measuring phase after this many s (flagged)')
    ap.add_argument('--load-deadline', type=float, default=3600)
    ap.add_argument('--json-out', help='also write the JSON result here')
    args = ap.parse_args()
    if args.seq_write_every is None:
        args.seq_write_every = 2 if args.scenario == 'flat' else 10
    need = (1, 36) if args.scenario == 'nested' else (1, 28)
    if mv_tuple(args.microversion) < need:
        ap.error('scenario %s needs microversion >= %d.%d' % ((args.scenario,) + need))
    if args.scale < 1 or args.requests < 0 or args.concurrency < 1 or args.load_concurrency < 1:
        ap.error('bad numbers')

    stats = Stats()
    cl = Client(args.url, args.token, args.microversion, args.timeout)
    sc = Scenario(args, cl, stats)
    res = {'label': args.label, 'url': args.url, 'scenario': args.scenario, 'scale': args.scale,
           'microversion': args.microversion, 'query': sc.query,
           'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'loadavg_start': loadavg(),
           'cpus': os.cpu_count(), 'host': socket.gethostname(),
           'settings': {k: v for k, v in vars(args).items() if k not in ('token',)}}
    rss = None
    if args.pid:
        rss = RssSampler(args.pid)
        if rss.sample() == 0:
            raise SystemExit('--pid %d: no such process' % args.pid)
        res['rss_before_kib'] = rss.last
        rss.start()

    fatal = None
    try:
        # server check + baseline
        r = cl.call('GET', '/')
        res['server_max_version'] = r.json()['versions'][0].get('max_version')
        r = cl.call('GET', '/resource_providers')
        res['preexisting_providers'] = len(r.json()['resource_providers'])
        r = cl.call('GET', sc.path)
        sc.baseline = len(r.json()['allocation_requests'])
        res['baseline_candidates'] = sc.baseline
        if res['preexisting_providers']:
            log('WARNING: server already has %d providers (%d match the query); '
                'timings include them' % (res['preexisting_providers'], sc.baseline))

        log('%s: loading %s scenario x%d (concurrency %d)' % (
            args.label, args.scenario, args.scale, args.load_concurrency))
        phase_load(sc, args, stats, res)
        log('load: %.1f s, %d requests' % (res['load']['seconds'], res['load']['requests']))
        if rss:
            res['rss_after_load_kib'] = rss.sample()

        # first query: timed, fully validated
        r = cl.call('GET', sc.path)
        res['first_query_s'] = r.elapsed
        sc.check_mv(r, 'first query')
        n, nsum, d = sc.count(r)
        exp = sc.baseline + sc.new_candidates
        res['candidates'] = {'after_load': n, 'expected_after_load': exp,
                             'provider_summaries': nsum, 'response_bytes': len(r.body)}
        if n != exp:
            stats.error('first query', '%d candidates, expected %d' % (n, exp))
        if sc.baseline == 0 and mv_tuple(args.microversion) >= (1, 29):
            # since 1.29 provider_summaries cover every provider of the trees involved
            want_sum = res['load']['providers_expected']
            res['candidates']['expected_provider_summaries'] = want_sum
            if nsum != want_sum:
                stats.error('first query', '%d provider_summaries, expected %d' % (nsum, want_sum))
        problems = sc.validate(d)
        res['candidates']['validation_problems'] = problems[:5]
        for p in problems[:5]:
            stats.error('validate', p)
        log('first query %.3f s: %d candidates (expected %d), %d provider summaries, %d bytes'
            % (r.elapsed, n, exp, nsum, len(r.body)))
        del d

        log('sequential: %d queries, a write every %d' % (args.seq_queries, args.seq_write_every))
        phase_sequential(sc, args, stats, res)
        log('sequential mean %.3f s' % (res['sequential'].get('mean_s') or 0))
        if args.requests and not args.skip_pure_reads:
            log('c=%d pure reads: %d requests' % (args.concurrency, args.requests))
            phase_concurrent(sc, args, stats, res, 'c10_reads', 0)
            log('c=%d reads: %.2f req/s' % (args.concurrency, res['c10_reads']['reads_per_s'] or 0))
        if args.requests and not args.skip_mixed:
            log('c=%d mixed: %d requests, 1 write in %d' % (
                args.concurrency, args.requests, args.write_every))
            phase_concurrent(sc, args, stats, res, 'c10_mixed', args.write_every)
            res['c10_mixed']['write_conflicts'] = sc.write_conflicts
            log('c=%d mixed: %.2f ops/s' % (args.concurrency, res['c10_mixed']['ops_per_s'] or 0))

        r = cl.call('GET', sc.path)
        n, _, _ = sc.count(r)
        lo, hi = sc.expected_now()
        res['candidates'].update({'final': n, 'final_expected_lo': lo, 'final_expected_hi': hi,
                                  'writes_ok': sc.writes_ok, 'write_conflicts': sc.write_conflicts})
        if not lo <= n <= hi:
            stats.error('final', '%d candidates after %d writes, expected %d..%d'
                        % (n, sc.writes_ok, lo, hi))
    except RequestFailed as e:
        fatal = str(e)
        stats.error('fatal', fatal)
    except KeyboardInterrupt:
        fatal = 'interrupted'
        stats.error('fatal', fatal)
    finally:
        if rss:
            rss.stop_ev.set()
            rss.join()
            rss.sample()
            res['rss'] = {'pid': args.pid, 'before_kib': res.get('rss_before_kib'),
                          'after_load_kib': res.get('rss_after_load_kib', rss.last),
                          'peak_kib': rss.peak, 'end_kib': rss.last}
    if args.cleanup and fatal != 'interrupted':
        log('cleanup: deleting %d consumers, %d providers' % (len(sc.consumers), len(sc.created_rps)))
        phase_cleanup(sc, args, stats, res)
    res['loadavg_end'] = loadavg()
    res['finished'] = time.strftime('%Y-%m-%dT%H:%M:%S%z')
    if not sc.mv_ok:
        res['microversion_mismatch'] = True
    res['errors'] = stats.errors
    res['error_samples'] = stats.samples
    res['ok'] = stats.errors == 0
    print(markdown(res))
    if stats.samples:
        print('\nerrors (first %d):' % len(stats.samples))
        for s in stats.samples:
            print('  - ' + s)
    js = json.dumps(res, indent=2, sort_keys=True)
    print('\n```json\n%s\n```' % js)
    if args.json_out:
        with open(args.json_out, 'w') as f:
            f.write(js + '\n')
    return 0 if res['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
