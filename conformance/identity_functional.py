#!/usr/bin/env python3
"""Run python-openstackclient's own identity v3 (or, with --suite image,
image) functional tests.

The tests ship inside the installed python-openstackclient package
(openstackclient.tests.functional.identity.v3, ...functional.image). They
drive the `openstack`
CLI with `--os-cloud devstack-admin` (project-scoped admin) and, for limits
and registered limits, `--os-cloud devstack-system-admin` (system-scoped
admin); before every CLI call they drop all OS_* variables, so the clouds
can only come from a clouds.yaml in a default location. This runner writes
one into a scratch directory and runs pytest from there (openstacksdk looks
in the current directory first).

By default it starts `oxistack up` itself (like tests/client/conftest.py);
with --clouds-yaml it uses an existing cloud instead.

Usually invoked through conformance/identity-functional.sh (or
image-functional.sh), which creates
the venv first. Prints a last line of the form
    N passed, N failed, N skipped
where skipped counts both tests excluded by the skips file and tests that
skipped themselves; exits non-zero if any non-excluded test failed.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "client"))

import oxistack_harness as h  # noqa: E402
import pytest  # noqa: E402  (from the venv made by venv.sh)

# The suites this runner knows: python-openstackclient's functional test
# package and the checked-in exclusion list of each.
SUITES = {
    "identity": ("openstackclient.tests.functional.identity.v3", "identity-functional-skips.txt"),
    "image": ("openstackclient.tests.functional.image", "image-functional-skips.txt"),
    "compute": ("openstackclient.tests.functional.compute", "compute-functional-skips.txt"),
}

# The compute tests boot servers from the first image named cirros-*-disk
# (devstack's CirrOS). This cloud's bootable image is the project's own guest
# (guest/build.sh): the runner uploads it once more under such a name.
COMPUTE_IMAGE_NAME = "cirros-oxistack-guest-disk"


def prepare_compute(clouds_yaml: Path) -> None:
    guest = os.environ.get("OXISTACK_GUEST_IMAGE")
    if not guest:
        raise SystemExit("the compute suite needs OXISTACK_GUEST_IMAGE (guest/build.sh)")
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(clouds_yaml), OS_CLOUD=ADMIN_CLOUD)
    osc = str(Path(sys.executable).parent / "openstack")
    subprocess.run(
        [osc, "image", "create", "--public", "--disk-format", "qcow2",
         "--container-format", "bare", "--file", guest, COMPUTE_IMAGE_NAME],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )


def delete_leftover_servers(clouds_yaml: Path) -> list[str]:
    """Deletes the servers the tests left (some upstream tests never delete
    theirs, e.g. test_server_create_with_empty_network_option_latest) and
    returns their ids. Done through the API while oxistack runs, so that a
    QEMU process still running after oxistack stops is oxistack's leak."""
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(clouds_yaml), OS_CLOUD=ADMIN_CLOUD)
    osc = str(Path(sys.executable).parent / "openstack")
    out = subprocess.run(
        [osc, "server", "list", "--all-projects", "-f", "value", "-c", "ID"],
        env=env, check=True, capture_output=True, text=True, timeout=120,
    ).stdout.split()
    if out:
        subprocess.run([osc, "server", "delete", "--wait", *out],
                       env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)
    return out


PACKAGE = SUITES["identity"][0]
ADMIN_CLOUD = "devstack-admin"
SYSTEM_CLOUD = "devstack-system-admin"
DEFAULT_SKIPS = HERE / SUITES["identity"][1]

PROJECT_SCOPE_KEYS = (
    "project_name",
    "project_id",
    "project_domain_name",
    "project_domain_id",
    "tenant_name",
    "tenant_id",
    "domain_name",
    "domain_id",
    "system_scope",
)


# ------------------------------------------------------------ skips file


def load_skips(path: Path) -> "OrderedDict[str, str]":
    """`test.id  # reason` per line; blank lines and whole-line comments ok.

    An id may name a single test (module.Class.test_method) or a prefix at
    a dot boundary (a whole class or module). Every entry needs a reason.
    """
    skips: OrderedDict[str, str] = OrderedDict()
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        test_id, sep, reason = line.partition("#")
        test_id, reason = test_id.strip(), reason.strip()
        if not sep or not reason:
            raise SystemExit(f"{path}:{n}: entry needs a '# reason' comment: {raw!r}")
        if not re.fullmatch(r"[A-Za-z_][\w.]*", test_id):
            raise SystemExit(f"{path}:{n}: not a dotted test id: {test_id!r}")
        if not test_id.startswith(PACKAGE):
            test_id = f"{PACKAGE}.{test_id}"
        skips[test_id] = reason
    return skips


def match_skip(test_id: str, skips) -> str | None:
    for entry in skips:
        if test_id == entry or test_id.startswith(entry + "."):
            return entry
    return None


_NODEID_RE = re.compile(r"(?:^|/)(openstackclient/tests/.+?)\.py::(.+)$")


def dotted_id(nodeid: str) -> str:
    """pytest node id -> module.Class.test (stestr/unittest style)."""
    m = _NODEID_RE.search(nodeid)
    if m:
        return m.group(1).replace("/", ".") + "." + m.group(2).replace("::", ".")
    # --pyargs with the package dir as rootdir: "test_user.py::UserTests::t"
    # (or "v2/test_image.py::ImageTests::t" for a package with subpackages)
    path, sep, rest = nodeid.partition("::")
    if sep and path.endswith(".py") and not path.startswith("/"):
        return f"{PACKAGE}.{path[:-3].replace('/', '.')}.{rest.replace('::', '.')}"
    return nodeid


# --------------------------------------------------------- pytest plugin


class Recorder:
    """pytest plugin: applies the exclusions and tallies outcomes."""

    def __init__(self, skips, run_excluded: bool):
        self.skips = skips
        self.run_excluded = run_excluded
        self.excluded: OrderedDict[str, str] = OrderedDict()
        self.used_entries: set[str] = set()
        self.collected = 0
        self.outcome: OrderedDict[str, str] = OrderedDict()
        self.skip_reason: dict[str, str] = {}

    # After -k/-m deselection, so only selected tests count as excluded.
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        keep, drop = [], []
        for item in items:
            tid = dotted_id(item.nodeid)
            entry = match_skip(tid, self.skips)
            if entry:
                self.used_entries.add(entry)
            if entry and not self.run_excluded:
                self.excluded[tid] = self.skips[entry]
                drop.append(item)
            else:
                keep.append(item)
        self.collected = len(items)
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    def pytest_runtest_logreport(self, report):
        tid = dotted_id(report.nodeid)
        prev = self.outcome.get(tid)
        if report.failed:
            self.outcome[tid] = "failed"
        elif report.skipped and prev != "failed":
            self.outcome[tid] = "skipped"
            if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
                self.skip_reason[tid] = str(report.longrepr[2])
        elif report.when == "call" and report.passed and prev is None:
            self.outcome[tid] = "passed"

    def count(self, what: str) -> int:
        return sum(1 for v in self.outcome.values() if v == what)


# --------------------------------------------------------------- clouds


def make_clouds(base: dict) -> dict:
    admin = copy.deepcopy(base)
    system = copy.deepcopy(base)
    auth = system.setdefault("auth", {})
    for k in PROJECT_SCOPE_KEYS:
        auth.pop(k, None)
        system.pop(k, None)
    auth["system_scope"] = "all"
    return {"clouds": {ADMIN_CLOUD: admin, SYSTEM_CLOUD: system}}


# ------------------------------------------------------------------ main


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Run python-openstackclient's identity v3 or image functional tests "
        "against oxistack (started here) or an existing cloud.",
        epilog="Arguments after `--` go to pytest (e.g. -k user, -x, "
        "--junitxml=out.xml).",
    )
    p.add_argument("--clouds-yaml", type=Path, help="use an existing cloud "
                   "from this clouds.yaml instead of starting oxistack")
    p.add_argument("--cloud", default=h.CLOUD_NAME, help="project-scoped admin "
                   "cloud in --clouds-yaml (default: %(default)s)")
    p.add_argument("--system-cloud", help="system-scoped admin cloud in "
                   "--clouds-yaml (default: derived from --cloud with "
                   "system_scope=all)")
    p.add_argument("--suite", choices=sorted(SUITES), default="identity",
                   help="which functional tests (default: %(default)s)")
    p.add_argument("--skips", type=Path, default=None,
                   help="exclusion list (default: conformance/<suite>-functional-skips.txt)")
    p.add_argument("--run-excluded", action="store_true",
                   help="run the excluded tests too (to find stale entries)")
    p.add_argument("--timeout", type=int, default=300,
                   help="per-test timeout in seconds (default: %(default)s)")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch directory (data dir, log, clouds.yaml)")
    args, rest = p.parse_known_args(argv)
    global PACKAGE
    PACKAGE = SUITES[args.suite][0]
    if args.skips is None:
        args.skips = HERE / SUITES[args.suite][1]
    if rest and rest[0] == "--":
        rest = rest[1:]
    args.pytest_args = rest
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    skips = load_skips(args.skips) if args.skips and args.skips.exists() else OrderedDict()
    work = Path(tempfile.mkdtemp(prefix="oxistack-osc-functional-"))
    server = db = None
    server_rc = 0
    leaked = {}
    try:
        if args.clouds_yaml:
            cfg = h.load_yaml(args.clouds_yaml)
            base = cfg["clouds"][args.cloud]
            target = f"{args.clouds_yaml} cloud {args.cloud}"
        else:
            db_url = None
            if os.environ.get("OXISTACK_TEST_DATABASE_URL"):
                db = h.ScratchPostgres(os.environ["OXISTACK_TEST_DATABASE_URL"])
                db_url = db.create()
            server = h.OxistackServer(
                h.default_binary(), work / "data", database_url=db_url,
                log_path=work / "oxistack.log",
            )
            print(f"starting {' '.join(server.command())}", flush=True)
            try:
                server.start()
            except h.ServerError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            base = h.load_yaml(server.clouds_yaml)["clouds"][h.CLOUD_NAME]
            cfg = {"clouds": {}}
            target = f"oxistack at {server.identity_url} (log {server.log_path})"

        clouds = make_clouds(base)
        if args.system_cloud:
            clouds["clouds"][SYSTEM_CLOUD] = copy.deepcopy(cfg["clouds"][args.system_cloud])
        h.dump_yaml(clouds, work / "clouds.yaml")
        (work / "pytest.ini").write_text("[pytest]\n")
        if args.suite == "compute":
            prepare_compute(work / "clouds.yaml")

        # The tests read OS_ADMIN_CLOUD / OS_SYSTEM_CLOUD / OS_AUTH_URL from
        # the environment: make it exactly what we wrote.
        for k in [k for k in os.environ if k.startswith("OS_")]:
            del os.environ[k]
        os.environ["OS_ADMIN_CLOUD"] = ADMIN_CLOUD
        os.environ["OS_SYSTEM_CLOUD"] = SYSTEM_CLOUD
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        # Make sure the `openstack` the tests spawn is the venv's.
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

        print(f"target: {target}", flush=True)
        print(f"clouds: {work / 'clouds.yaml'} ({ADMIN_CLOUD}, {SYSTEM_CLOUD})", flush=True)
        print(f"skips:  {args.skips} ({len(skips)} entries)", flush=True)

        recorder = Recorder(skips, args.run_excluded)
        os.chdir(work)
        pytest_argv = [
            "-c", str(work / "pytest.ini"), "--rootdir", str(work),
            "-p", "no:cacheprovider", "-v", "--tb=short", "-rfE",
            f"--timeout={args.timeout}",
            "--pyargs", PACKAGE,
            *args.pytest_args,
        ]
        rc = pytest.main(pytest_argv, plugins=[recorder])
        if args.suite == "compute" and server is not None:
            try:
                left = delete_leftover_servers(work / "clouds.yaml")
                if left:
                    print(f"deleted {len(left)} server(s) the tests left: {' '.join(left)}")
            except (subprocess.SubprocessError, OSError) as e:
                # What stays running is reported as leaked below.
                print(f"error: deleting the servers the tests left: {e}", file=sys.stderr)
    finally:
        os.chdir(REPO_ROOT)
        if server is not None:
            try:
                # Also reports a crash during the run (stop() on an exited
                # process just collects its status).
                if server.proc is not None:
                    server_rc = server.stop()
            except h.ServerError as e:
                print(f"error: {e}", file=sys.stderr)
                server_rc = -1
            server._kill_quietly()
            # The tests delete their servers: a QEMU still running is a
            # leak (of a test or of oxistack). Reported, and killed.
            leaked = server.kill_guests()
        if db is not None:
            db.drop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    passed, failed = recorder.count("passed"), recorder.count("failed")
    self_skipped = recorder.count("skipped")
    excluded = len(recorder.excluded)

    print()
    print("=" * 70)
    if failed:
        print(f"FAILED ({failed}):")
        for tid, v in recorder.outcome.items():
            if v == "failed":
                print(f"  {tid}")
    if self_skipped:
        print(f"SKIPPED by the tests themselves ({self_skipped}):")
        for tid, v in recorder.outcome.items():
            if v == "skipped":
                print(f"  {tid}  -- {recorder.skip_reason.get(tid, '')}")
    if excluded:
        print(f"EXCLUDED by {args.skips.name} ({excluded}, not run):")
        for tid, reason in recorder.excluded.items():
            print(f"  {tid}  # {reason}")
    stale = [e for e in skips if e not in recorder.used_entries]
    if stale and not args.pytest_args:
        print(f"WARNING: skips entries matching no collected test ({len(stale)}):")
        for e in stale:
            print(f"  {e}")
    if server is not None and server_rc != 0:
        print(f"ERROR: oxistack exit status {server_rc} (expected 0 after SIGTERM)")
    if leaked:
        print(f"ERROR: QEMU processes left running after the tests (pid: instance): {leaked}")
    print(f"selected {recorder.collected}: {passed} passed, {failed} failed, "
          f"{excluded} excluded, {self_skipped} skipped by the tests")
    print(f"{passed} passed, {failed} failed, {excluded + self_skipped} skipped")

    if failed:
        return 1
    if rc not in (0, 1, 5) or recorder.collected == 0:
        # 2 interrupted, 3 internal error, 4 usage error, 5 nothing ran
        print(f"pytest exited with {rc}", file=sys.stderr)
        return rc or 4
    if server is not None and server_rc != 0:
        return 3
    if leaked:
        return 6
    return 0


if __name__ == "__main__":
    sys.exit(main())
