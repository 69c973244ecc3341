"""Start/stop a real `oxistack up` process for client-level tests.

Shared by tests/client/conftest.py (pytest fixture) and
conformance/identity_functional.py (runner for python-openstackclient's own
functional tests). Standard library only, apart from the optional psycopg
used for the PostgreSQL scratch database.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CLOUD_NAME = "oxistack"


def default_binary() -> Path:
    """$OXISTACK_BIN, else target/debug/oxistack under the repo root."""
    env = os.environ.get("OXISTACK_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else (REPO_ROOT / p)
    return REPO_ROOT / "target" / "debug" / "oxistack"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get(url: str, headers: dict | None = None, timeout: float = 5.0):
    """GET url; returns (status, body_bytes). Never raises on HTTP errors."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def server_allocations(osc, server_id: str, env: dict | None = None) -> dict:
    """A server's placement allocations (`openstack resource provider
    allocation show`): provider -> resources; {} when it has none."""
    out = osc.run("resource", "provider", "allocation", "show", server_id, "-f", "json", env=env)
    if out.returncode != 0:
        return {}
    return {a["resource_provider"]: a["resources"] for a in json.loads(out.stdout)}


def post_server(osc, base_url: str, name: str, image: str, flavor: str,
                env: dict | None = None) -> str:
    """Creates a server through the compute API directly (no `--wait`, no
    polling: the call returns as soon as the API accepted it); its id."""
    token = osc.ok("token", "issue", "-f", "value", "-c", "id", env=env).strip()
    body = json.dumps({"server": {
        "name": name,
        "imageRef": osc.json("image", "show", image, env=env)["id"],
        "flavorRef": osc.json("flavor", "show", flavor, env=env)["id"],
        "networks": "none",
    }}).encode()
    req = urllib.request.Request(
        f"{base_url}/compute/v2.1/servers", data=body, method="POST",
        headers={"X-Auth-Token": token, "Content-Type": "application/json",
                 "OpenStack-API-Version": "compute 2.79"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 202, r.status
        return json.loads(r.read())["server"]["id"]


def clean_os_env(base: dict | None = None) -> dict:
    """A copy of the environment with every OS_* variable removed."""
    env = dict(os.environ if base is None else base)
    for k in list(env):
        if k.startswith("OS_"):
            del env[k]
    return env


def tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(lines[-n:])


class ServerError(RuntimeError):
    pass


def qemu_guests(instances_dir: Path) -> dict[int, str]:
    """Running QEMU processes whose files are under instances_dir (pid ->
    the instance directory's name)."""
    marker = (str(instances_dir) + "/").encode()
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or b"qemu-system" not in argv[0]:
            continue
        for a in argv:
            i = a.find(marker)
            if i >= 0:
                rest = a[i + len(marker):].decode(errors="replace")
                found[int(p.name)] = rest.split("/", 1)[0]
                break
    return found


def kill_pids(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class OxistackServer:
    """One `oxistack up` process bound to 127.0.0.1:<port>.

    The port and data dir are fixed for the lifetime of the object, so
    stop() + start() is a restart on the same data (and the clouds.yaml it
    wrote stays valid).
    """

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        *,
        port: int | None = None,
        database_url: str | None = None,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
    ):
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.database_url = database_url
        self.log_path = log_path or self.data_dir.parent / (
            self.data_dir.name + ".oxistack.log"
        )
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self._log = None
        atexit.register(self._kill_quietly)

    # -- addresses ---------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def identity_url(self) -> str:
        return f"{self.base_url}/identity"

    @property
    def identity_v3_url(self) -> str:
        return f"{self.identity_url}/v3"

    @property
    def clouds_yaml(self) -> Path:
        return self.data_dir / "clouds.yaml"

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "up",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"{self.host}:{self.port}",
        ]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        return cmd + self.extra_args

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout: float | None = None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError("already running")
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise ServerError(
                f"oxistack binary not found/executable at {self.binary} "
                "(build it first, or set OXISTACK_BIN)"
            )
        if timeout is None:
            timeout = float(os.environ.get("OXISTACK_START_TIMEOUT", "90"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log.write(
            f"\n=== {time.strftime('%H:%M:%S')} start: "
            f"{' '.join(self.command())}\n".encode()
        )
        self._log.flush()
        # Own session: a ^C on the test runner must not reach the server
        # before the fixture stops it; the server's own exit code is checked.
        env = clean_os_env()
        # Every CLI call of these tests authenticates with a password: at
        # bcrypt's production cost (12) that is a fifth of the suite's time
        # and tests nothing. The lowest cost (4) checks the same code path.
        env.setdefault("OXISTACK_IDENTITY__PASSWORD_HASH_ROUNDS", "4")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerError(
                    f"oxistack exited with {rc} before answering "
                    f"{self.identity_v3_url}\n--- {self.log_path}:\n"
                    f"{tail(self.log_path)}"
                )
            try:
                status, _ = http_get(self.identity_v3_url, timeout=2)
                if status == 200 and self.clouds_yaml.exists():
                    return
                last = f"HTTP {status}"
            except (OSError, urllib.error.URLError) as e:
                last = str(e)
            time.sleep(0.2)
        self._kill_quietly()
        raise ServerError(
            f"oxistack did not answer GET {self.identity_v3_url} with 200 "
            f"within {timeout:.0f}s (last: {last})\n--- {self.log_path}:\n"
            f"{tail(self.log_path)}"
        )

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, return the exit code (kill -9 and raise on hang)."""
        if self.proc is None:
            raise ServerError("not started")
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ServerError(
                f"oxistack did not exit within {timeout:.0f}s of SIGTERM"
                f"\n--- {self.log_path}:\n{tail(self.log_path)}"
            )
        finally:
            if self._log:
                self._log.close()
                self._log = None
        return rc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def guests(self) -> dict[int, str]:
        """QEMU processes of this cloud's instances (pid -> the instance
        directory's name): they outlive oxistack by design, so after a
        session whose servers were all deleted there must be none."""
        return qemu_guests(self.data_dir / "instances")

    def kill_guests(self) -> dict[int, str]:
        """SIGKILL every QEMU process of this cloud; returns what it found."""
        found = self.guests()
        kill_pids(found)
        return found

    def _kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except Exception:
                pass

    # -- client side ---------------------------------------------------------
    def client_env(self, cloud: str = CLOUD_NAME) -> dict:
        env = clean_os_env()
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        env["OS_CLOUD"] = cloud
        return env


class ScratchPostgres:
    """A fresh, uniquely named database created from an admin URL.

    admin_url is any URL that can run CREATE/DROP DATABASE (e.g.
    postgres://postgres:pw@127.0.0.1:5432/postgres); the scratch database
    lives on the same server with the same credentials.
    """

    def __init__(self, admin_url: str, prefix: str = "oxistack_test"):
        self.admin_url = admin_url
        self.name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
        parts = urllib.parse.urlsplit(admin_url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError(
                f"OXISTACK_TEST_DATABASE_URL must be postgres://..., got "
                f"{parts.scheme}://"
            )
        self.url = urllib.parse.urlunsplit(parts._replace(path="/" + self.name))
        self.created = False

    def _sql(self, statement: str) -> None:
        try:
            import psycopg  # type: ignore
        except ImportError:
            psycopg = None
        if psycopg is not None:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(statement)
            return
        psql = shutil.which("psql")
        if not psql:
            raise RuntimeError("need psycopg or psql to create the test database")
        subprocess.run(
            [psql, self.admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", statement],
            check=True,
            env=clean_os_env(),
        )

    def create(self) -> str:
        # Name is [a-z0-9_] only, so quoting is trivially safe.
        self._sql(f'CREATE DATABASE "{self.name}"')
        self.created = True
        return self.url

    def drop(self) -> None:
        if self.created:
            self._sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False


def load_yaml(path: Path):
    import yaml  # PyYAML, pinned in conformance/requirements.txt

    with open(path) as f:
        return yaml.safe_load(f)


def dump_yaml(data, path: Path) -> None:
    import yaml

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, default_flow_style=False, sort_keys=False)


def version_document(url: str) -> dict:
    status, body = http_get(url)
    if status != 200:
        raise ServerError(f"GET {url} -> {status}")
    return json.loads(body)
