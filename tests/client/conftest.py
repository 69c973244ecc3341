"""pytest fixtures: a live `oxistack up` and the real `openstack` CLI.

Environment:
  OXISTACK_BIN                 server binary (default: <repo>/target/debug/oxistack)
  OXISTACK_TEST_DATABASE_URL   postgres://... admin URL; when set, a fresh
                               database is created for the session, passed to
                               `oxistack up --database-url`, and dropped after
  OXISTACK_START_TIMEOUT       seconds to wait for GET /identity/v3 (default 90)
  OXISTACK_TEST_KEEP           1 = keep the temp data dir (and print its path)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from oxistack_harness import (
    CLOUD_NAME,
    OxistackServer,
    ScratchPostgres,
    ServerError,
    clean_os_env,
    default_binary,
    tail,
)


def _openstack_executable() -> str:
    # Prefer the CLI installed next to the interpreter running pytest (the
    # venv from conformance/venv.sh), even when the venv is not activated.
    cand = Path(sys.executable).parent / "openstack"
    if cand.exists():
        return str(cand)
    found = shutil.which("openstack")
    if not found:
        pytest.exit("`openstack` CLI not found; run conformance/venv.sh", 2)
    return found


class CLIError(AssertionError):
    pass


class OpenStackCLI:
    """Runs `openstack ...` as a subprocess."""

    def __init__(self, executable: str):
        self.executable = executable

    def run(
        self, *args: str, env: dict | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess:
        if len(args) == 1:
            # osc.run("token issue") is shorthand for osc.run("token", "issue")
            args = tuple(shlex.split(args[0]))
        cmd = [self.executable, *args]
        return subprocess.run(
            cmd,
            env=os.environ.copy() if env is None else env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str, env: dict | None = None) -> str:
        """Run, require exit 0, return stdout."""
        p = self.run(*args, env=env)
        if p.returncode != 0:
            raise CLIError(self._describe(p))
        return p.stdout

    def json(self, *args: str, env: dict | None = None):
        """Run with `-f json`, require exit 0, return the decoded output."""
        if len(args) == 1:
            args = tuple(shlex.split(args[0]))
        out = self.ok(*args, "-f", "json", env=env)
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise CLIError(f"`openstack {' '.join(args)}` printed non-JSON: {e}\n{out}")

    def fail(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run, require a non-zero exit, return the CompletedProcess."""
        p = self.run(*args, env=env)
        if p.returncode == 0:
            raise CLIError("expected failure, got success:\n" + self._describe(p))
        return p

    @staticmethod
    def _describe(p: subprocess.CompletedProcess) -> str:
        return (
            f"$ {' '.join(p.args)}\nexit {p.returncode}\n"
            f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
        )


class Cloud:
    """The running server plus the environment the tests talk to it with."""

    def __init__(self, server: OxistackServer, workdir: Path):
        self.server = server
        self.workdir = workdir

    @property
    def identity_url(self) -> str:
        return self.server.identity_url

    @property
    def v3(self) -> str:
        return self.server.identity_v3_url

    @property
    def clouds_yaml(self) -> Path:
        return self.server.clouds_yaml

    def admin_env(self) -> dict:
        return self.server.client_env(CLOUD_NAME)

    def password_env(self, username: str, password: str, project: str | None) -> dict:
        """Environment for a password user in the Default domain (no clouds.yaml)."""
        env = clean_os_env()
        env.update(
            OS_AUTH_TYPE="password",
            OS_AUTH_URL=self.identity_url,
            OS_IDENTITY_API_VERSION="3",
            OS_USERNAME=username,
            OS_PASSWORD=password,
            OS_USER_DOMAIN_NAME="Default",
            OS_CLIENT_CONFIG_FILE=str(self.workdir / "no-clouds.yaml"),
        )
        if project:
            env.update(OS_PROJECT_NAME=project, OS_PROJECT_DOMAIN_NAME="Default")
        return env


@pytest.fixture(scope="session")
def cloud():
    binary = default_binary()
    if not binary.exists():
        pytest.fail(
            f"oxistack binary not found at {binary}: build it or set OXISTACK_BIN",
            pytrace=False,
        )
    keep = os.environ.get("OXISTACK_TEST_KEEP") == "1"
    workdir = Path(tempfile.mkdtemp(prefix="oxistack-client-"))
    (workdir / "no-clouds.yaml").write_text("clouds: {}\n")

    db = None
    db_url = None
    admin_db_url = os.environ.get("OXISTACK_TEST_DATABASE_URL")
    if admin_db_url:
        db = ScratchPostgres(admin_db_url)
        db_url = db.create()

    server = OxistackServer(
        binary,
        workdir / "data",
        database_url=db_url,
        log_path=workdir / "oxistack.log",
    )
    saved_env = os.environ.copy()
    try:
        try:
            server.start()
        except ServerError as e:
            pytest.fail(str(e), pytrace=False)
        # Export for everything that runs `openstack` from here on.
        for k in [k for k in os.environ if k.startswith("OS_")]:
            del os.environ[k]
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(server.clouds_yaml)
        os.environ["OS_CLOUD"] = CLOUD_NAME

        yield Cloud(server, workdir)

        # stop() on a process that already died just collects its status,
        # so a crash during the session shows up here too.
        rc = server.stop() if server.proc is not None else 0
        assert rc == 0, (
            f"oxistack exit status {rc} (expected 0 after SIGTERM)\n"
            f"{tail(server.log_path)}"
        )
        # Every test deletes its servers: a QEMU still running is a leak.
        leaked = server.kill_guests()
        assert not leaked, f"QEMU processes left running for instances {leaked}"
    finally:
        server._kill_quietly()
        server.kill_guests()
        os.environ.clear()
        os.environ.update(saved_env)
        if db is not None:
            db.drop()
        if keep:
            print(f"\n[oxistack] kept {workdir} (log: {server.log_path})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def osc(cloud) -> OpenStackCLI:
    """The `openstack` CLI, authenticated via OS_CLOUD=oxistack by default."""
    return OpenStackCLI(_openstack_executable())
