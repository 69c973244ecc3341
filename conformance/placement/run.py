#!/usr/bin/env python3
"""Run upstream OpenStack Placement's gabbi functional suite over HTTP.

Every YAML file of placement/tests/functional/gabbits (from the pinned
openstack-placement wheel) runs against a freshly started placement server:

    run.py --server-cmd CMD      start CMD once per YAML file, on a free port,
                                 in the mode the file needs; stop it after.
    run.py --url URL --reset-cmd CMD
                                 use one already-running server; CMD must
                                 empty it and switch it to the file's mode
                                 before each file (forces --jobs 1).

Scenario data that upstream writes straight into its database is recreated
through the HTTP API by fixtures.py. Tests gabbi cannot send over a socket
are replaced by raw-socket checks from raw_tests.py. See README.md for the
server hook contract.

The last line of output is exactly "N passed, N failed" (plus ", N skipped"
when something was skipped). Tests listed in expected-failures.txt still
count as failed, are reported separately and do not make the exit status
non-zero; any other failure does.
"""

import argparse
import concurrent.futures
import fnmatch
import glob
import importlib.util
import json
import multiprocessing
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_EXPECTED = os.path.join(HERE, 'expected-failures.txt')


def ensure_venv():
    """Re-exec under the conformance venv unless gabbi and placement are
    importable already."""
    if (importlib.util.find_spec('gabbi') is not None and
            importlib.util.find_spec('placement') is not None):
        os.environ.setdefault('PLACEMENT_VENV', sys.prefix)
        return
    if os.environ.get('_OXISTACK_PLACEMENT_REEXEC'):
        sys.exit('run.py: gabbi/placement still not importable after '
                 're-exec under the venv')
    venv = subprocess.run([os.path.join(HERE, 'venv.sh')], check=True,
                          stdout=subprocess.PIPE, text=True
                          ).stdout.strip().splitlines()[-1]
    python = os.path.join(venv, 'bin', 'python')
    env = dict(os.environ, _OXISTACK_PLACEMENT_REEXEC='1',
               PLACEMENT_VENV=venv)
    os.execve(python, [python, os.path.abspath(__file__)] + sys.argv[1:],
              env)


def default_gabbits_dir():
    spec = importlib.util.find_spec('placement')
    return os.path.join(list(spec.submodule_search_locations)[0],
                        'tests', 'functional', 'gabbits')


def test_id(stem, name):
    """The name gabbi gives a test: <file stem>_<lowercased name, spaces
    replaced by underscores>; also what expected-failures.txt lists."""
    return '%s_%s' % (stem, name.lower().replace(' ', '_'))


def load_expected(path):
    """Parse expected-failures.txt: one test id (or fnmatch pattern) per
    line, optionally followed by '# reason'."""
    entries = {}
    if not path or not os.path.exists(path):
        return entries
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            text, _, reason = line.partition('#')
            text = text.strip()
            if not text:
                continue
            entries[text] = reason.strip() or '(no reason given)'
    return entries


def match_expected(name, entries):
    if name in entries:
        return name
    for pattern in entries:
        if any(c in pattern for c in '*?[') and fnmatch.fnmatchcase(
                name, pattern):
            return pattern
    return None


# ---------------------------------------------------------------------------
# Server handling


def free_port(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def is_ready(url):
    try:
        with urllib.request.urlopen(url.rstrip('/') + '/', timeout=5) as r:
            if r.status != 200:
                return False
            doc = json.loads(r.read())
            return isinstance(doc, dict) and 'versions' in doc
    except (OSError, ValueError, urllib.error.URLError):
        return False


def tail(path, lines=30):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


class ServerError(Exception):
    pass


def _set_pdeathsig():
    """Ask Linux to SIGTERM this process when its parent dies, so that
    neither pool workers nor servers outlive a killed runner."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


# The server of the file this process is running (for signal handlers).
CURRENT_SERVER = None


class Server:
    """One server (or one reset of the --url server) for one YAML file."""

    def __init__(self, opts, env, log_path):
        self.opts = opts
        self.env = env
        self.log_path = log_path
        self.proc = None
        self.url = opts['url']

    def start(self):
        opts = self.opts
        log = open(self.log_path, 'ab')
        try:
            if opts['server_cmd']:
                self.proc = subprocess.Popen(
                    opts['server_cmd'], shell=True, env=self.env,
                    stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=_set_pdeathsig)
                self.url = self.env['PLACEMENT_URL']
            elif opts['reset_cmd']:
                rc = subprocess.run(
                    opts['reset_cmd'], shell=True, env=self.env,
                    stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=opts['start_timeout']).returncode
                if rc != 0:
                    raise ServerError('--reset-cmd exited with status %d'
                                      % rc)
        finally:
            log.close()
        deadline = time.monotonic() + opts['start_timeout']
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError('server command exited with status %s '
                                  'before it was ready' % self.proc.returncode)
            if is_ready(self.url):
                break
            if time.monotonic() > deadline:
                raise ServerError('server not ready at %s/ after %ss'
                                  % (self.url, opts['start_timeout']))
            time.sleep(0.05)
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError('server command exited with status %s; '
                              'something else answers at %s'
                              % (self.proc.returncode, self.url))

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Reap anything else left in the group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def server_env(opts, mode, state_dir, port, stem, fixture_names,
               policy_file):
    env = dict(os.environ)
    host = opts['host']
    if opts['server_cmd']:
        url = 'http://%s:%d' % (host, port)
    else:
        url = opts['url']
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port or 80
    env.update({
        'PLACEMENT_HOST': host,
        'PLACEMENT_PORT': str(port),
        'PLACEMENT_URL': url,
        'PLACEMENT_STATE_DIR': state_dir,
        'PLACEMENT_RUN_DIR': opts['run_dir'],
        'PLACEMENT_AUTH_STRATEGY': 'noauth2',
        'PLACEMENT_ENFORCE_NEW_DEFAULTS':
            'true' if mode['enforce_new_defaults'] else 'false',
        # oslo.policy >= 4.5 always enforces scope_types; stated for the
        # benefit of non-upstream servers.
        'PLACEMENT_ENFORCE_SCOPE': 'true',
        'PLACEMENT_OPEN_POLICY': '1' if mode['open_policy'] else '0',
        'PLACEMENT_POLICY_FILE': policy_file or '',
        'PLACEMENT_CORS_ALLOWED_ORIGIN': mode['cors_allowed_origin'] or '',
        'PLACEMENT_CORS_ALLOW_HEADERS': ','.join(mode['cors_allow_headers']),
        'PLACEMENT_TEST_FILE': stem + '.yaml',
        'PLACEMENT_FIXTURES': ','.join(fixture_names),
    })
    return env


# ---------------------------------------------------------------------------
# Running one file


class Recorder(unittest.TestResult):
    """Collect one record per gabbi test: (id, name, outcome, detail)."""

    def __init__(self, stem):
        super().__init__()
        self.stem = stem
        self.records = []
        self._started = {}

    def _add(self, test, outcome, detail=''):
        data = getattr(test, 'test_data', {}) or {}
        name = data.get('name') or str(test)
        self.records.append({
            'id': test_id(self.stem, name), 'name': name,
            'request': '%s %s' % (data.get('method', '?'),
                                  data.get('url', '?')),
            'outcome': outcome, 'detail': detail,
            'seconds': round(time.monotonic() -
                             self._started.get(id(test), time.monotonic()),
                             3)})

    def startTest(self, test):
        super().startTest(test)
        self._started[id(test)] = time.monotonic()

    def addSuccess(self, test):
        self._add(test, 'pass')

    @staticmethod
    def _message(err):
        """The exception text without the traceback: for gabbi assertion
        failures it already holds the expectation and the response."""
        exc_type, exc, tb = err
        text = ''.join(traceback.format_exception_only(exc_type, exc))
        frames = traceback.extract_tb(tb)
        where = ('  (raised at %s:%d in %s)\n' % (
            frames[-1].filename, frames[-1].lineno, frames[-1].name)
            if frames else '')
        return text, where

    def addFailure(self, test, err):
        text, _ = self._message(err)
        self._add(test, 'fail', text)
        self.records[-1]['traceback'] = self._exc_info_to_string(err, test)

    def addError(self, test, err):
        text, where = self._message(err)
        self._add(test, 'fail', 'ERROR: ' + text + where)
        self.records[-1]['traceback'] = self._exc_info_to_string(err, test)

    def addSkip(self, test, reason):
        if reason == 'fixture failure':
            # GabbiSuite reports a fixture error on the first test and
            # "skips" the rest; they did not run, which is a failure here.
            if any(r['id'] == test_id(self.stem, test.test_data['name'])
                   for r in self.records):
                return
            self._add(test, 'fail', 'not run: the file\'s fixture failed '
                                    '(see the first test of the file)')
        else:
            self._add(test, 'skip', reason)

    def addExpectedFailure(self, test, err):
        # gabbi 'xfail: true' - upstream itself expects the failure.
        self._add(test, 'pass', 'xfail (as upstream)')

    def addUnexpectedSuccess(self, test):
        self._add(test, 'fail', "gabbi 'xfail' test unexpectedly passed")


def run_file(path, opts):
    """Run one YAML file against its own server; return a result dict."""
    from gabbi import handlers
    from gabbi import suitemaker
    from gabbi import utils

    import fixtures as fixtures_mod
    import raw_tests

    basename = os.path.basename(path)
    stem = basename[:-len('.yaml')]
    started = time.monotonic()
    result = {'file': basename, 'records': [], 'log': None,
              'setup_error': None}

    suite_dict = utils.load_yaml(yaml_file=path, safe=True)
    tests = suite_dict.get('tests') or []
    raw = []
    for name, check in raw_tests.REPLACEMENTS.get(basename, []):
        idx = [i for i, t in enumerate(tests) if t.get('name') == name]
        if len(idx) != 1:
            raise SystemExit('run.py: raw_tests.py replaces %r in %s but '
                             'the file has %d such tests' %
                             (name, basename, len(idx)))
        del tests[idx[0]]
        raw.append((name, check))
    all_names = [t.get('name') for t in tests] + [n for n, _ in raw]

    def fail_all(reason):
        result['setup_error'] = reason
        result['records'] = [
            {'id': test_id(stem, n), 'name': n, 'outcome': 'fail',
             'detail': reason, 'seconds': 0} for n in all_names]
        result['seconds'] = round(time.monotonic() - started, 2)
        return result

    fixture_names = suite_dict.get('fixtures') or []
    missing = [n for n in fixture_names if not hasattr(fixtures_mod, n)]
    if missing:
        return fail_all('fixtures.py has no fixture named %s'
                        % ', '.join(missing))
    classes = [getattr(fixtures_mod, n) for n in fixture_names]
    mode = fixtures_mod.server_mode(classes)

    state_dir = tempfile.mkdtemp(prefix=stem + '.', dir=opts['run_dir'])
    policy_file = None
    if mode['open_policy']:
        policy_file = os.path.join(state_dir, 'policy.yaml')
        with open(policy_file, 'w') as f:
            # JSON is valid YAML; oslo.policy reads either.
            json.dump(fixtures_mod.open_policy_rules(), f, indent=1,
                      sort_keys=True)
    port = free_port(opts['host']) if opts['server_cmd'] else None
    env = server_env(opts, mode, state_dir, port, stem, fixture_names,
                     policy_file)
    log_path = os.path.join(opts['log_dir'], stem + '.log')
    result['log'] = log_path
    global CURRENT_SERVER
    server = CURRENT_SERVER = Server(opts, env, log_path)
    try:
        try:
            server.start()
        except (ServerError, OSError, subprocess.SubprocessError) as exc:
            return fail_all('server start failed: %s\n--- %s (tail) ---\n%s'
                            % (exc, log_path, tail(log_path)))
        url = server.url
        fixtures_mod.BASE_URL = url
        parts = urllib.parse.urlsplit(url)
        loader = unittest.TestLoader()
        handler_objects = [h() for h in handlers.RESPONSE_HANDLERS]
        try:
            file_suite = suitemaker.test_suite_from_dict(
                loader, stem, suite_dict, opts['gabbits_dir'],
                parts.hostname, parts.port or 80, fixtures_mod, None,
                prefix=parts.path.rstrip('/'), handlers=handler_objects)
        except Exception as exc:  # GabbiFormatError and friends
            return fail_all('could not build gabbi suite: %s' % exc)
        recorder = Recorder(stem)
        file_suite.run(recorder)
        records = recorder.records
        for name, check in raw:
            t0 = time.monotonic()
            try:
                check(url)
                outcome, detail = 'pass', ''
            except AssertionError as exc:
                outcome, detail = 'fail', str(exc)
            except Exception:
                outcome, detail = 'fail', 'ERROR\n' + traceback.format_exc()
            records.append({'id': test_id(stem, name), 'name': name,
                            'request': 'POST /resource_providers '
                                       '(raw socket)',
                            'outcome': outcome, 'detail': detail,
                            'raw': True,
                            'seconds': round(time.monotonic() - t0, 3)})
        # Anything gabbi did not report at all (should not happen) fails.
        seen = {r['name'] for r in records}
        for n in all_names:
            if n not in seen:
                records.append({'id': test_id(stem, n), 'name': n,
                                'outcome': 'fail', 'seconds': 0,
                                'detail': 'not reported by gabbi'})
        if server.proc is not None and server.proc.poll() is not None:
            result['setup_error'] = ('server exited with status %s during '
                                     'the file' % server.proc.returncode)
        result['records'] = records
    finally:
        server.stop()
        CURRENT_SERVER = None
        shutil.rmtree(state_dir, ignore_errors=True)
    result['seconds'] = round(time.monotonic() - started, 2)
    return result


def _stop_and_exit(signum, frame):
    """SIGTERM in a pool worker: stop the current server, exit at once.

    (Raising SystemExit would not do: concurrent.futures workers catch
    BaseException from the task and carry on with the next one.)"""
    server = CURRENT_SERVER
    if server is not None:
        try:
            server.stop()
        except Exception:
            pass
    os._exit(143)


def _worker_init():
    sys.path.insert(0, HERE)
    _set_pdeathsig()
    # The parent decides about interrupts: it sends SIGTERM to the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_and_exit)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------
# Main


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        '--server-cmd', metavar='CMD',
        help='shell command that serves placement with an empty database '
             'on $PLACEMENT_HOST:$PLACEMENT_PORT in the mode described by '
             'the PLACEMENT_* environment (see README.md); started once '
             'per YAML file and stopped (SIGTERM to its process group) '
             'after it')
    target.add_argument(
        '--url', metavar='URL',
        help='root URL of an already running placement server (use with '
             '--reset-cmd)')
    target.add_argument('--list', action='store_true',
                        help='list the test ids (after --only filtering) '
                             'and exit')
    p.add_argument('--reset-cmd', metavar='CMD',
                   help='with --url: shell command run before each file, '
                        'with the same PLACEMENT_* environment as '
                        '--server-cmd; it must empty the server and put it '
                        'in the requested mode, then exit 0')
    p.add_argument('--only', metavar='PATTERN', action='append', default=[],
                   help='run only YAML files whose name matches (fnmatch '
                        'pattern, ".yaml" optional, or a plain substring); '
                        'repeatable')
    p.add_argument('--expected-failures', metavar='FILE',
                   default=DEFAULT_EXPECTED,
                   help='known failures: one test id per line plus '
                        '"# reason" (default: %(default)s)')
    p.add_argument('-j', '--jobs', type=int,
                   default=min(2, os.cpu_count() or 1),
                   help='YAML files run in parallel, each with its own '
                        'server (default: %(default)s; forced to 1 with '
                        '--url)')
    p.add_argument('--host', default='127.0.0.1',
                   help='address given to --server-cmd servers '
                        '(default: %(default)s)')
    p.add_argument('--start-timeout', type=float, default=60,
                   help='seconds to wait for a server to answer GET / '
                        '(default: %(default)s)')
    p.add_argument('--gabbits-dir', default=None,
                   help='directory of YAML files (default: the installed '
                        'openstack-placement package\'s)')
    p.add_argument('--work-dir', default=None,
                   help='where the run directory (server state, logs) is '
                        'created (default: $TMPDIR)')
    p.add_argument('--keep', action='store_true',
                   help='keep the run directory even if everything passed')
    p.add_argument('-v', '--verbose', action='store_true',
                   help='print every test result')
    p.add_argument('--max-detail-lines', type=int, default=60,
                   help='lines of detail printed per failure (0: all)')
    p.add_argument('--json', metavar='FILE',
                   help='also write all results to FILE as JSON')
    args = p.parse_args(argv)
    if args.reset_cmd and not args.url:
        p.error('--reset-cmd needs --url')
    if args.url:
        args.jobs = 1
    return args


def select_files(gabbits_dir, patterns):
    files = sorted(glob.glob(os.path.join(gabbits_dir, '*.yaml')))
    if not patterns:
        return files
    chosen = []
    for f in files:
        base = os.path.basename(f)
        stem = base[:-len('.yaml')]
        for pat in patterns:
            if (fnmatch.fnmatchcase(base, pat) or
                    fnmatch.fnmatchcase(stem, pat) or
                    (not any(c in pat for c in '*?[') and pat in base)):
                chosen.append(f)
                break
    return chosen


def count_tests(path):
    from gabbi import utils
    return len(utils.load_yaml(yaml_file=path, safe=True).get('tests') or [])


def shorten(text, max_lines):
    lines = text.rstrip().splitlines()
    if max_lines and len(lines) > max_lines:
        keep = lines[:max_lines]
        keep.append('... (%d more lines; --max-detail-lines 0 shows all)'
                    % (len(lines) - max_lines))
        lines = keep
    return '\n'.join('    ' + line for line in lines)


def main(argv=None):
    ensure_venv()
    sys.path.insert(0, HERE)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    gabbits_dir = os.path.abspath(args.gabbits_dir or default_gabbits_dir())
    files = select_files(gabbits_dir, args.only)
    if not files:
        sys.exit('run.py: no YAML files match %s in %s'
                 % (args.only, gabbits_dir))

    if args.list:
        import raw_tests
        from gabbi import utils
        for f in files:
            stem = os.path.basename(f)[:-len('.yaml')]
            raw = {n for n, _ in raw_tests.REPLACEMENTS.get(
                os.path.basename(f), [])}
            for t in utils.load_yaml(yaml_file=f, safe=True)['tests']:
                print(test_id(stem, t['name']) +
                      ('    [raw socket: raw_tests.py]'
                       if t['name'] in raw else ''))
        return 0

    expected = load_expected(args.expected_failures)
    run_dir = tempfile.mkdtemp(prefix='placement-conformance-',
                               dir=args.work_dir)
    log_dir = os.path.join(run_dir, 'logs')
    os.makedirs(log_dir)
    opts = {
        'server_cmd': args.server_cmd, 'url': args.url,
        'reset_cmd': args.reset_cmd, 'host': args.host,
        'start_timeout': args.start_timeout, 'gabbits_dir': gabbits_dir,
        'run_dir': run_dir, 'log_dir': log_dir,
    }
    if args.url and not args.reset_cmd:
        print('run.py: warning: --url without --reset-cmd: files are not '
              'isolated and fixtures will refuse a non-empty server',
              file=sys.stderr)

    target = args.server_cmd or args.url
    print('placement conformance: %d files from %s' % (len(files),
                                                        gabbits_dir))
    print('target: %s (jobs: %d)' % (target, args.jobs))
    sys.stdout.flush()

    # Ctrl-C and SIGTERM both end the run cleanly (servers stopped),
    # even if SIGINT was inherited as ignored (background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)

    t0 = time.monotonic()
    results = []

    def report(res):
        counts = {}
        for r in res['records']:
            counts[r['outcome']] = counts.get(r['outcome'], 0) + 1
        bad = counts.get('fail', 0)
        summary = '%d passed' % counts.get('pass', 0)
        if bad:
            summary += ', %d failed' % bad
        if counts.get('skip'):
            summary += ', %d skipped' % counts['skip']
        print('%s %-48s %s [%.1fs]' % ('FAIL' if bad else 'ok  ',
                                       res['file'], summary,
                                       res.get('seconds', 0)))
        if res.get('setup_error'):
            print('     %s' % res['setup_error'].splitlines()[0])
        if args.verbose:
            for r in res['records']:
                print('       %-4s %s%s' % (r['outcome'], r['id'],
                                            ' [raw socket]' if r.get('raw')
                                            else ''))
        sys.stdout.flush()

    interrupted = False
    try:
        if args.jobs <= 1:
            for f in files:
                res = run_file(f, opts)
                results.append(res)
                report(res)
        else:
            # Longest files first for better packing.
            order = sorted(files, key=count_tests, reverse=True)
            ctx = multiprocessing.get_context('fork')
            with concurrent.futures.ProcessPoolExecutor(
                    max_workers=args.jobs, mp_context=ctx,
                    initializer=_worker_init) as pool:
                futures = {pool.submit(run_file, f, opts): f for f in order}
                try:
                    for fut in concurrent.futures.as_completed(futures):
                        res = fut.result()
                        results.append(res)
                        report(res)
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    for proc in list((getattr(pool, '_processes', None)
                                      or {}).values()):
                        try:
                            proc.terminate()  # SIGTERM -> _stop_and_exit
                        except Exception:
                            pass
                    for proc in list((getattr(pool, '_processes', None)
                                      or {}).values()):
                        proc.join(15)
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    except KeyboardInterrupt:
        interrupted = True
        print('\ninterrupted', file=sys.stderr)

    elapsed = time.monotonic() - t0
    results.sort(key=lambda r: r['file'])

    passed = skipped = 0
    unexpected, xfails, stale = [], [], []
    used_patterns = set()
    for res in results:
        for r in res['records']:
            r['file'] = res['file']
            r['log'] = res['log']
            pattern = match_expected(r['id'], expected)
            if pattern:
                used_patterns.add(pattern)
            if r['outcome'] == 'pass':
                passed += 1
                if pattern:
                    stale.append((r, pattern))
            elif r['outcome'] == 'skip':
                skipped += 1
            elif pattern:
                xfails.append((r, expected[pattern]))
            else:
                unexpected.append(r)

    if unexpected:
        print('\n===== %d unexpected failure(s) =====' % len(unexpected))
        for r in unexpected:
            print('\nFAIL: %s  (%s: %r)%s' % (
                r['id'], r['file'], r['name'],
                ' [raw socket]' if r.get('raw') else ''))
            if r.get('request'):
                print('    request: %s' % r['request'])
            print(shorten(r['detail'], args.max_detail_lines))
            print('    server log: %s' % r['log'])
    if xfails:
        print('\n===== %d expected failure(s) (%s) =====' % (
            len(xfails), os.path.basename(args.expected_failures)))
        for r, reason in xfails:
            print('XFAIL: %s  # %s' % (r['id'], reason))
    if stale:
        print('\n===== %d listed as expected failures but passed '
              '(remove them from %s) =====' % (
                  len(stale), os.path.basename(args.expected_failures)))
        for r, pattern in stale:
            print('XPASS: %s  (entry: %s)' % (r['id'], pattern))

    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'target': target, 'seconds': round(elapsed, 1),
                       'results': results}, f, indent=1)

    keep = args.keep or unexpected or interrupted
    if keep:
        print('\nrun directory (server logs) kept: %s' % run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)

    failed = len(unexpected) + len(xfails)
    print('\n%d files in %.1fs; failures: %d unexpected, %d expected '
          '(listed in %s)' % (len(results), elapsed, len(unexpected),
                              len(xfails),
                              os.path.basename(args.expected_failures)))
    line = '%d passed, %d failed' % (passed, failed)
    if skipped:
        line += ', %d skipped' % skipped
    print(line)
    sys.stdout.flush()
    if interrupted:
        return 130
    return 1 if unexpected else 0


if __name__ == '__main__':
    sys.exit(main())
