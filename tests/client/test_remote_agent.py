"""A compute host on another machine, through the real `openstack` CLI.

`oxistack agent` (QEMU, its own process and data directory, as it runs on
a compute host) is driven by a second `oxistack up` that runs no servers
itself (`compute.driver = "none"`, the agent under `compute.remote_agents`).
A server booted through the API is a QEMU process of the agent, its image
shipped to the agent, its console read through it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from oxistack_harness import (
    OxistackServer,
    ServerError,
    clean_os_env,
    default_binary,
    free_port,
    http_get,
    kill_pids,
    post_server,
    server_allocations,
    qemu_guests,
    tail,
)

GUEST = "oxistack-guest"
HOST = "oxi-remote-host"
HOST_IP = "192.0.2.21"


class Agent:
    def __init__(self, binary: Path, data_dir: Path, port: int, log: Path):
        self.binary = binary
        self.data_dir = data_dir
        self.port = port
        self.log_path = log
        self._log = open(log, "ab")
        self.start()

    def start(self, path_first: Path | None = None) -> None:
        """Starts the agent process; `path_first` goes ahead of PATH (where
        a test puts its own qemu-system-x86_64)."""
        env = clean_os_env()
        if path_first is not None:
            env["PATH"] = f"{path_first}:{env.get('PATH', '')}"
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "agent",
                "--driver",
                "qemu",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                str(self.data_dir),
                "--host",
                HOST,
                "--my-ip",
                HOST_IP,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: the agent gets no chance to finish anything."""
        self.proc.kill()
        self.proc.wait(timeout=30)

    @property
    def token_file(self) -> Path:
        return self.data_dir / "agent-token"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"the agent exited:\n{tail(self.log_path)}")
            if self.token_file.exists():
                token = self.token_file.read_text().strip()
                try:
                    status, _ = http_get(
                        f"http://127.0.0.1:{self.port}/v1/health",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=2,
                    )
                    if status == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        raise ServerError(f"the agent did not answer:\n{tail(self.log_path)}")

    def servers(self) -> list:
        token = self.token_file.read_text().strip()
        status, body = http_get(
            f"http://127.0.0.1:{self.port}/v1/servers",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert status == 200, body
        return json.loads(body)

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._log.close()


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    if not os.environ.get("OXISTACK_GUEST_IMAGE"):
        pytest.fail("OXISTACK_GUEST_IMAGE is not set (guest/build.sh builds the image)")
    binary = default_binary()
    work = tmp_path_factory.mktemp("remote")
    agent = Agent(binary, work / "agent", free_port(), work / "agent.log")
    cp_dir = work / "cp"
    cp_dir.mkdir()
    port = free_port()
    (cp_dir / "oxistack.toml").write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n\n'
        f'[database]\nurl = "sqlite:{cp_dir / "oxistack.db"}"\n\n'
        '[compute]\ndriver = "none"\nreport_interval_seconds = 2\n\n'
        "[[compute.remote_agents]]\n"
        f'url = "http://127.0.0.1:{agent.port}"\n'
        f'token_file = "{agent.token_file}"\n'
    )
    server = OxistackServer(binary, cp_dir, port=port, log_path=work / "cp.log")
    try:
        agent.wait_ready()
        server.start()
        yield server, agent
        rc = server.stop()
        assert rc == 0, f"oxistack exit status {rc}\n{tail(server.log_path)}"
        rc = agent.stop()
        assert rc == 0, f"agent exit status {rc}\n{tail(agent.log_path)}"
        leaked = qemu_guests(agent.data_dir / "instances")
        assert not leaked, f"QEMU processes left running on the agent: {leaked}"
    finally:
        server._kill_quietly()
        if agent.proc.poll() is None:
            agent.proc.kill()
        kill_pids(qemu_guests(agent.data_dir / "instances"))


def _wait(osc, env, name: str, status: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = osc.json("server", "show", name, env=env)
        if last["status"] == status and not last.get("OS-EXT-STS:task_state"):
            return last
        if last["status"] == "ERROR":
            raise AssertionError(f"{name} went to ERROR: {last.get('fault')}")
        time.sleep(0.5)
    raise AssertionError(f"{name} did not reach {status}: {last}")


def _console_until(osc, env, name: str, needle: str, timeout: float = 180.0) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = osc.ok("console", "log", "show", name, env=env)
        if needle in out:
            return out
        time.sleep(1)
    raise AssertionError(f"{needle!r} not in the console of {name}:\n{out[-2000:]}")


def test_a_server_on_a_remote_host(remote, osc):
    server, agent = remote
    env = server.client_env()
    hvs = osc.json("hypervisor", "list", env=env)
    assert [(h["Hypervisor Hostname"], h["Host IP"]) for h in hvs] == [(HOST, HOST_IP)], hvs
    services = osc.json("compute", "service", "list", "--service", "nova-compute", env=env)
    assert [(s["Host"], s["State"]) for s in services] == [(HOST, "up")], services

    osc.ok(
        "server", "create", "--image", GUEST, "--flavor", "m1.tiny",
        "--wait", "far-vm", env=env,
    )
    s = _wait(osc, env, "far-vm", "ACTIVE")
    assert s["OS-EXT-SRV-ATTR:host"] == HOST
    # A QEMU process of the agent, on the image the agent received.
    guests = qemu_guests(agent.data_dir / "instances")
    assert list(guests.values()) == [s["id"]], guests
    assert [x["id"] for x in agent.servers()] == [s["id"]]
    assert any((agent.data_dir / "images").iterdir()), "the image was shipped"
    _console_until(osc, env, "far-vm", "OXISTACK-GUEST-BOOTED")
    _console_until(osc, env, "far-vm", "hostname: far-vm")

    osc.ok("server", "stop", "far-vm", env=env)
    _wait(osc, env, "far-vm", "SHUTOFF")
    assert not qemu_guests(agent.data_dir / "instances")
    osc.ok("server", "start", "far-vm", env=env)
    _wait(osc, env, "far-vm", "ACTIVE")

    osc.ok("server", "delete", "--wait", "far-vm", env=env)
    assert agent.servers() == []
    assert not qemu_guests(agent.data_dir / "instances")
    assert not (agent.data_dir / "instances" / s["id"]).exists()


def _agent_sees_host_up(osc, env, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        services = osc.json("compute", "service", "list", "--service", "nova-compute", env=env)
        if [(s["Host"], s["State"]) for s in services] == [(HOST, "up")]:
            return
        time.sleep(0.5)
    raise AssertionError(f"{HOST} is not up: {services}")


def test_agent_killed_while_starting_a_guest_leaves_nothing(remote, osc, tmp_path):
    """The agent dies after it launched the guest's QEMU and before it could
    answer: the build fails (ERROR, allocation freed) and, once the agent is
    back, the QEMU process and the disks it left are removed."""
    server, agent = remote
    env = server.client_env()
    # A qemu-system-x86_64 that holds the guest's launch back while a gate
    # file exists, so the kill lands while the agent waits for the guest
    # (the real QEMU then starts, as it would have).
    real = shutil.which("qemu-system-x86_64")
    assert real, "qemu-system-x86_64 is not installed"
    gate, launched = tmp_path / "gate", tmp_path / "launched"
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    wrapper = wrappers / "qemu-system-x86_64"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{gate}" ]; then : > "{launched}"; sleep 3; fi\n'
        f'exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    agent.kill()
    agent.start(path_first=wrappers)
    agent.wait_ready()
    _agent_sees_host_up(osc, env)

    gate.touch()
    sid = post_server(osc, server.base_url, "cut-short", GUEST, "m1.tiny", env=env)
    deadline = time.monotonic() + 120
    while not launched.exists():
        assert time.monotonic() < deadline, "the agent never launched the guest"
        time.sleep(0.02)
    agent.kill()
    gate.unlink()

    # The build fails: ERROR with a fault, no allocation.
    deadline = time.monotonic() + 60
    while True:
        shown = osc.json("server", "show", sid, env=env)
        if shown["status"] == "ERROR":
            break
        assert time.monotonic() < deadline, f"the build did not fail: {shown}"
        time.sleep(0.5)
    assert shown["fault"]["message"], shown
    assert server_allocations(osc, sid, env=env) == {}, "allocation left behind"
    # What the dead agent left: the guest's QEMU, its disks.
    deadline = time.monotonic() + 30
    while sid not in qemu_guests(agent.data_dir / "instances").values():
        assert time.monotonic() < deadline, "the guest's QEMU never started"
        time.sleep(0.2)
    assert (agent.data_dir / "instances" / sid).exists()

    # The agent comes back: the control plane has it remove the rest.
    agent.start()
    agent.wait_ready()
    deadline = time.monotonic() + 60
    while (sid in qemu_guests(agent.data_dir / "instances").values()
           or (agent.data_dir / "instances" / sid).exists()):
        assert time.monotonic() < deadline, (
            f"the failed build is still on the host:\n{tail(agent.log_path)}")
        time.sleep(0.5)
    assert agent.servers() == []
    shown = osc.json("server", "show", sid, env=env)
    assert shown["status"] == "ERROR", shown
    assert server_allocations(osc, sid, env=env) == {}
    _agent_sees_host_up(osc, env)

    osc.ok("server", "delete", "--wait", sid, env=env)
    assert osc.run("server", "show", sid, env=env).returncode != 0
