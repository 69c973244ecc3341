#!/usr/bin/env python3
"""Compute benchmarks (issue: compute service).

  bench/compute/run.py fake  [--hosts 1000] [--creates 5000] [--total 10000]
  bench/compute/run.py qemu  [--servers 20] [--rounds 5]

fake: `oxistack up` with the fake hypervisor and --hosts hosts. Creates
      --creates servers with 16 concurrent clients and reports servers
      scheduled per second (first POST to the last server ACTIVE: placement
      candidates, filters, weigher, claim, define and power-on on the fake
      host). Then fills up to --total servers and times 200 sequential
      `GET /servers/detail?limit=1000` (p50 / p99).
qemu: `oxistack up` with the QEMU driver (KVM when it works, else TCG) and
      the guest image (OXISTACK_GUEST_IMAGE). Boots --servers servers at once
      and reports, per server, the time from the API's 202 to ACTIVE (median,
      p95; ACTIVE as the server recorded it, `OS-SRV-USG:launched_at`, and
      as a client polling every 50 ms saw it); then launches the same number of bare qemu-system processes with
      the command line oxistack used (same disk layout: a fresh qcow2 overlay
      on the same base, the same config drive) and times each to a guest CPU
      running (QMP `cont` answered); the difference of the medians (the
      recorded ACTIVE against the bare `cont`) is oxistack's overhead per
      server. Also reports the RSS of the oxistack
      process with the servers running (QEMU excluded).

Environment: OXISTACK_BIN (default target/release/oxistack).
Prints a table and writes bench/compute/results-<mode>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "client"))
from oxistack_harness import OxistackServer  # noqa: E402


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Api:
    def __init__(self, server: OxistackServer):
        cfg = yaml.safe_load(server.clouds_yaml.read_text())["clouds"]["oxistack"]
        auth = cfg["auth"]
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": auth["username"], "password": auth["password"],
            "domain": {"name": auth.get("user_domain_name", "Default")}}}},
            "scope": {"project": {"name": auth["project_name"],
                                  "domain": {"name": auth.get("project_domain_name", "Default")}}}}}
        r = requests.post(f"{server.identity_v3_url}/auth/tokens", json=body, timeout=30)
        r.raise_for_status()
        self.token = r.headers["X-Subject-Token"]
        self.base = f"{server.base_url}/compute/v2.1"
        self.local = threading.local()

    def session(self) -> requests.Session:
        s = getattr(self.local, "s", None)
        if s is None:
            s = requests.Session()
            s.headers.update({"X-Auth-Token": self.token,
                              "OpenStack-API-Version": "compute 2.79"})
            self.local.s = s
        return s

    def get(self, path):
        r = self.session().get(self.base + path, timeout=60)
        r.raise_for_status()
        return r.json()

    def create(self, name, image, flavor="1"):
        r = self.session().post(self.base + "/servers", json={"server": {
            "name": name, "imageRef": image, "flavorRef": flavor, "networks": "none"}},
            timeout=60)
        if r.status_code != 202:
            raise RuntimeError(f"create: {r.status_code} {r.text}")
        return r.json()["server"]["id"]


def image_id(server: OxistackServer, api: Api, name: str | None) -> str:
    r = requests.get(f"{server.base_url}/image/v2/images", headers={"X-Auth-Token": api.token},
                     timeout=30)
    r.raise_for_status()
    images = r.json()["images"]
    if name:
        images = [i for i in images if i["name"] == name]
    if images:
        return images[0]["id"]
    # A tiny raw image for the fake driver.
    r = requests.post(f"{server.base_url}/image/v2/images", headers={"X-Auth-Token": api.token},
                      json={"name": "bench", "disk_format": "raw", "container_format": "bare",
                            "visibility": "public"}, timeout=30)
    r.raise_for_status()
    iid = r.json()["id"]
    requests.put(f"{server.base_url}/image/v2/images/{iid}/file",
                 headers={"X-Auth-Token": api.token, "Content-Type": "application/octet-stream"},
                 data=b"\0" * 4096, timeout=30).raise_for_status()
    return iid


def wait_active(api: Api, ids: set[str], timeout: float, seen: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    left = set(ids)
    while left and time.monotonic() < deadline:
        marker = None
        while True:
            q = "/servers/detail?limit=1000" + (f"&marker={marker}" if marker else "")
            page = api.get(q)["servers"]
            now = time.monotonic()
            for s in page:
                if s["id"] in left and s["status"] in ("ACTIVE", "ERROR"):
                    if s["status"] == "ERROR":
                        raise RuntimeError(f"server {s['id']} ERROR: {s.get('fault')}")
                    left.discard(s["id"])
                    if seen is not None:
                        seen[s["id"]] = now
            if len(page) < 1000:
                break
            marker = page[-1]["id"]
        if left:
            time.sleep(0.05)
    if left:
        raise RuntimeError(f"{len(left)} servers not ACTIVE after {timeout} s")


def start(tmp: Path, env: dict, extra: list[str]) -> OxistackServer:
    os.environ.update(env)
    binary = Path(os.environ.get("OXISTACK_BIN", ROOT / "target" / "release" / "oxistack"))
    server = OxistackServer(binary, tmp / "data", log_path=tmp / "oxistack.log",
                            extra_args=extra)
    server.start(timeout=300)
    return server


def run_fake(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="oxistack-bench-compute-"))
    env = {
        "OXISTACK_COMPUTE__DRIVER": "fake",
        "OXISTACK_COMPUTE__FAKE_HOSTS": str(args.hosts),
        "OXISTACK_COMPUTE__QUOTA_INSTANCES": "-1",
        "OXISTACK_COMPUTE__QUOTA_CORES": "-1",
        "OXISTACK_COMPUTE__QUOTA_RAM": "-1",
        "OXISTACK_LOG__LEVEL": "warn",
    }
    t0 = time.monotonic()
    server = start(tmp, env, [])
    up_s = time.monotonic() - t0
    try:
        api = Api(server)
        img = image_id(server, api, None)
        flavor = args.flavor

        def burst(n, prefix):
            ids = set()
            with cf.ThreadPoolExecutor(16) as ex:
                for sid in ex.map(lambda i: api.create(f"{prefix}-{i}", img, flavor), range(n)):
                    ids.add(sid)
            return ids

        t0 = time.monotonic()
        ids = burst(args.creates, "s")
        accepted = time.monotonic() - t0
        wait_active(api, ids, 600)
        elapsed = time.monotonic() - t0
        rate = args.creates / elapsed
        if args.total > args.creates:
            ids2 = burst(args.total - args.creates, "t")
            wait_active(api, ids2, 900)
        # Time to the last byte of the response; the client's JSON decoding
        # (about as long again in Python) is not the server's latency.
        times = []
        for _ in range(200):
            t = time.monotonic()
            r = api.session().get(api.base + "/servers/detail?limit=1000", timeout=60)
            body = r.content
            times.append((time.monotonic() - t) * 1000)
            r.raise_for_status()
            assert len(json.loads(body)["servers"]) == 1000
        res = {
            "mode": "fake", "hosts": args.hosts, "creates": args.creates,
            "startup_s": round(up_s, 2),
            "accept_s": round(accepted, 2), "all_active_s": round(elapsed, 2),
            "scheduled_per_s": round(rate, 1), "total_servers": args.total,
            "detail_1000_p50_ms": round(pct(times, 50), 1),
            "detail_1000_p99_ms": round(pct(times, 99), 1),
            "rss_mib": round(rss_kib(server.proc.pid) / 1024, 1),
        }
        return res
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def qmp_cont(sock: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(sock))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    f = s.makefile("rwb")
    f.readline()
    for cmd in ({"execute": "qmp_capabilities"}, {"execute": "cont"}):
        f.write(json.dumps(cmd).encode() + b"\n")
        f.flush()
        while True:
            line = json.loads(f.readline())
            if "return" in line or "error" in line:
                break
    s.close()


def bare_launch(cmdline: list[str], inst_dir: Path, work: Path, base: Path,
                done: threading.Barrier) -> float:
    """Same command line, fresh copies of its files; time to `cont`. The
    guest keeps running until every bare launch got there, as oxistack's
    guests do while the later ones start (they compete for the CPUs)."""
    work.mkdir(parents=True)
    t0 = time.monotonic()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
                    str(work / "disk")], check=True)
    for f in inst_dir.iterdir():
        if f.name in ("disk", "console.log") or not f.is_file() or f.is_socket():
            continue
        if f.suffix == ".pid" or f.name.endswith("pid"):
            continue
        shutil.copy(f, work / f.name)
    cmd = [a.replace(str(inst_dir), str(work)) for a in cmdline]
    cmd = [a for a in cmd if a != "-daemonize"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        qmp_cont(work / "qmp.sock")
        elapsed = time.monotonic() - t0
        done.wait(timeout=300)
        return elapsed
    finally:
        p.kill()
        p.wait()


def run_qemu(args) -> dict:
    guest = os.environ.get("OXISTACK_GUEST_IMAGE")
    if not guest:
        sys.exit("set OXISTACK_GUEST_IMAGE (guest/build.sh builds it)")
    tmp = Path(tempfile.mkdtemp(prefix="oxb-", dir="/var/tmp"))
    # 20 one-vCPU servers on a 2-core machine: Nova's older default CPU
    # overcommit (16) instead of today's initial 4.0.
    env = {"OXISTACK_LOG__LEVEL": "warn", "OXISTACK_COMPUTE__QUOTA_INSTANCES": "-1",
           "OXISTACK_COMPUTE__CPU_ALLOCATION_RATIO": "16",
           "OXISTACK_COMPUTE__QUOTA_CORES": "-1", "OXISTACK_COMPUTE__QUOTA_RAM": "-1"}
    server = start(tmp, env, ["--guest-image", guest])
    try:
        api = Api(server)
        img = image_id(server, api, "oxistack-guest")
        accepted = {}
        seen = {}
        lock = threading.Lock()

        accepted_wall = {}

        def one(i):
            sid = api.create(f"q-{i}", img, args.flavor)
            with lock:
                accepted[sid] = time.monotonic()
                accepted_wall[sid] = time.time()
            return sid

        with cf.ThreadPoolExecutor(args.servers) as ex:
            ids = set(ex.map(one, range(args.servers)))
        wait_active(api, ids, 600, seen)
        # Seen by polling (every 50 ms, plus the list's own time under the
        # load of 20 booting guests) and as the server recorded it: the
        # moment the server turned ACTIVE (`OS-SRV-USG:launched_at`, same
        # clock as the client's).
        polled = [seen[i] - accepted[i] for i in ids]
        ours = []
        for sid in ids:
            launched = api.get(f"/servers/{sid}")["server"]["OS-SRV-USG:launched_at"]
            t = datetime.datetime.fromisoformat(launched).replace(tzinfo=datetime.timezone.utc)
            ours.append(t.timestamp() - accepted_wall[sid])
        time.sleep(2)
        rss = rss_kib(server.proc.pid)
        # Bare launches with the same command line.
        inst_root = server.data_dir / "instances"
        sample = sorted(ids)[0]
        pid = None
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    c = (p / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if c and b"qemu-system" in c[0] and sample.encode() in b" ".join(c):
                    pid, cmdline = int(p.name), [x.decode() for x in c if x]
                    break
        if pid is None:
            raise RuntimeError("no QEMU process found for a server")
        base = next((inst_root / "_base").iterdir())
        # Keep a copy of the sample's files, then remove every server so the
        # bare launches get the machine to themselves, as ours did.
        sample_dir = tmp / "sample"
        sample_dir.mkdir()
        for f in (inst_root / sample).iterdir():
            if f.is_file() and not f.is_socket() and f.name != "disk":
                shutil.copy(f, sample_dir / f.name)
        cmdline = [a.replace(str(inst_root / sample), str(sample_dir)) for a in cmdline]
        for sid in ids:
            api.session().delete(f"{api.base}/servers/{sid}", timeout=60)
        deadline = time.monotonic() + 120
        def ours_running():
            for p in Path("/proc").iterdir():
                if not p.name.isdigit():
                    continue
                try:
                    c = (p / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"qemu-system" in c and str(inst_root).encode() in c:
                    return True
            return False

        while time.monotonic() < deadline and ours_running():
            time.sleep(0.2)
        time.sleep(2)
        bare = []
        work_root = tmp / "bare"
        done = threading.Barrier(args.servers)
        with cf.ThreadPoolExecutor(args.servers) as ex:
            futs = [ex.submit(bare_launch, cmdline, sample_dir, work_root / str(i), base, done)
                    for i in range(args.servers)]
            bare = [f.result() for f in futs]
        res = {
            "mode": "qemu", "servers": args.servers,
            "accept_to_active_median_s": round(statistics.median(ours), 3),
            "accept_to_active_p95_s": round(pct(ours, 95), 3),
            "accept_to_seen_active_median_s": round(statistics.median(polled), 3),
            "accept_to_seen_active_p95_s": round(pct(polled, 95), 3),
            "bare_launch_median_s": round(statistics.median(bare), 3),
            "bare_launch_p95_s": round(pct(bare, 95), 3),
            "overhead_median_ms": round((statistics.median(ours) - statistics.median(bare)) * 1000),
            "overhead_seen_median_ms": round(
                (statistics.median(polled) - statistics.median(bare)) * 1000),
            "rss_mib_with_servers": round(rss / 1024, 1),
        }
        return res
    finally:
        time.sleep(3)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["fake", "qemu"])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--creates", type=int, default=5000)
    ap.add_argument("--total", type=int, default=10000)
    ap.add_argument("--servers", type=int, default=20)
    ap.add_argument("--flavor", default="1")
    ap.add_argument("--rounds", type=int, default=5,
                    help="qemu: runs (each on a fresh cloud); the figures are the "
                         "medians over the runs, whose spread on 2 cores is wide")
    args = ap.parse_args()
    if args.mode == "fake":
        res = run_fake(args)
    else:
        runs = [run_qemu(args) for _ in range(max(1, args.rounds))]
        res = {k: (statistics.median(r[k] for r in runs) if isinstance(v, (int, float))
                   else v) for k, v in runs[0].items()}
        res["rounds"] = len(runs)
        res["overhead_ms_per_round"] = [r["overhead_median_ms"] for r in runs]
    out = Path(__file__).with_name(f"results-{args.mode}.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    for k, v in res.items():
        print(f"{k:32} {v}")


if __name__ == "__main__":
    main()
