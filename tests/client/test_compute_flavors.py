"""Compute flavors and key pairs as seen by the real `openstack` CLI.

Every test shells out to python-openstackclient against the session's live
`oxistack up` (see conftest.py), which creates the default flavors
m1.tiny, m1.small and m1.medium at start.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest


def _flavor_names(osc, *args, env=None) -> set:
    return {r["Name"] for r in osc.json("flavor", "list", *args, env=env)}


def _md5_fingerprint(public_key: str) -> str:
    raw = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(raw[i:i + 2] for i in range(0, len(raw), 2))


@pytest.fixture(scope="module")
def demo(osc, cloud) -> dict:
    """A second project with a member user (dave), and his CLI environment."""
    p = osc.json("project", "create", "flv-demo")
    osc.json("user", "create", "--password", "dave-pw", "dave")
    osc.ok("role", "add", "--project", "flv-demo", "--user", "dave", "member")
    return {"project": p, "env": cloud.password_env("dave", "dave-pw", "flv-demo")}


# ------------------------------------------------------------- flavors

def test_default_flavors(osc):
    rows = {r["Name"]: r for r in osc.json("flavor", "list")}
    assert {"m1.tiny", "m1.small", "m1.medium"} <= set(rows)
    tiny = rows["m1.tiny"]
    assert (tiny["ID"], tiny["RAM"], tiny["Disk"], tiny["VCPUs"]) == ("1", 512, 1, 1)
    medium = osc.json("flavor", "show", "m1.medium")
    assert (medium["ram"], medium["disk"], medium["vcpus"]) == (4096, 40, 2)
    assert medium["os-flavor-access:is_public"] is True


def test_flavor_lifecycle(osc):
    f = osc.json("flavor", "create", "--ram", "256", "--disk", "2", "--vcpus", "2",
                 "--swap", "64", "--ephemeral", "1", "--id", "cli-1",
                 "--description", "made by the CLI", "--property", "hw:cpu_policy=shared",
                 "cli.small")
    assert f["id"] == "cli-1"
    assert f["ram"] == 256 and f["vcpus"] == 2 and f["disk"] == 2
    assert f["swap"] == 64
    assert f["OS-FLV-EXT-DATA:ephemeral"] == 1
    assert f["description"] == "made by the CLI"
    assert f["properties"] == {"hw:cpu_policy": "shared"}
    assert "cli.small" in _flavor_names(osc)

    osc.ok("flavor", "set", "--property", "hw:mem_page_size=large",
           "--property", "resources:VCPU=2", "cli.small")
    shown = osc.json("flavor", "show", "cli.small")
    assert shown["properties"] == {
        "hw:cpu_policy": "shared", "hw:mem_page_size": "large", "resources:VCPU": "2",
    }
    osc.ok("flavor", "unset", "--property", "hw:cpu_policy", "cli.small")
    assert "hw:cpu_policy" not in osc.json("flavor", "show", "cli-1")["properties"]
    osc.ok("flavor", "set", "--description", "changed", "cli-1")
    assert osc.json("flavor", "show", "cli-1")["description"] == "changed"

    # A taken name is refused with Nova's message.
    p = osc.fail("flavor", "create", "--ram", "1", "--disk", "1", "--vcpus", "1",
                 "cli.small")
    assert "Flavor with name cli.small already exists." in p.stderr

    osc.ok("flavor", "delete", "cli.small")
    assert "cli.small" not in _flavor_names(osc, "--all")
    p = osc.fail("flavor", "show", "cli-1")
    assert "No Flavor found for cli-1" in p.stderr or "could not be found" in p.stderr


def test_private_flavor_and_access(osc, demo):
    f = osc.json("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1",
                 "--private", "--project", "flv-demo", "cli.private")
    assert f["os-flavor-access:is_public"] is False
    env = demo["env"]
    # Admins see it with --private / --all, not in the default (public) list.
    assert "cli.private" in _flavor_names(osc, "--private")
    assert "cli.private" in _flavor_names(osc, "--all")
    assert "cli.private" not in _flavor_names(osc, "--public")
    shown = osc.json("flavor", "show", "cli.private")
    assert demo["project"]["id"] in str(shown["access_project_ids"])
    # The project on the access list sees it; its users cannot manage it.
    assert "cli.private" in _flavor_names(osc, env=env)
    assert osc.json("flavor", "show", f["id"], env=env)["name"] == "cli.private"
    p = osc.fail("flavor", "create", "--ram", "1", "--disk", "1", "--vcpus", "1",
                 "mine", env=env)
    assert "os_compute_api:os-flavor-manage:create" in p.stderr

    osc.ok("flavor", "unset", "--project", "flv-demo", "cli.private")
    assert "cli.private" not in _flavor_names(osc, env=env)
    osc.fail("flavor", "show", f["id"], env=env)
    osc.ok("flavor", "set", "--project", "flv-demo", "cli.private")
    assert "cli.private" in _flavor_names(osc, env=env)
    # Public flavors have no access list.
    p = osc.fail("flavor", "set", "--project", "flv-demo", "m1.tiny")
    assert p.returncode != 0
    osc.ok("flavor", "delete", "cli.private")


# ------------------------------------------------------------- key pairs

def test_keypair_generated(osc, tmp_path):
    key_file = tmp_path / "id_gen"
    k = osc.json("keypair", "create", "--private-key", str(key_file), "cli-gen")
    assert k["name"] == "cli-gen"
    text = key_file.read_text()
    assert text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert stat.S_ISREG(key_file.stat().st_mode)
    # The saved private key matches the stored public key and fingerprint.
    os.chmod(key_file, 0o600)
    pub = subprocess.run(["ssh-keygen", "-y", "-f", str(key_file)], check=True,
                         capture_output=True, text=True).stdout.strip()
    stored = osc.ok("keypair", "show", "--public-key", "cli-gen").strip()
    assert stored.split()[:2] == pub.split()[:2]
    assert k["fingerprint"] == _md5_fingerprint(pub)
    shown = osc.json("keypair", "show", "cli-gen")
    assert shown["type"] == "ssh"
    assert shown["fingerprint"] == k["fingerprint"]

    # Printed to stdout when not saved.
    out = osc.ok("keypair", "create", "cli-gen-stdout")
    assert "PRIVATE KEY-----" in out
    osc.ok("keypair", "delete", "cli-gen", "cli-gen-stdout")


def test_keypair_import_list_delete(osc, tmp_path, demo):
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "",
                    "-C", "cli@test", "-f", str(tmp_path / "rsa")], check=True)
    pub = (tmp_path / "rsa.pub").read_text()
    k = osc.json("keypair", "create", "--public-key", str(tmp_path / "rsa.pub"),
                 "cli-imported")
    assert k["fingerprint"] == _md5_fingerprint(pub)
    want = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(tmp_path / "rsa.pub")],
                          check=True, capture_output=True, text=True).stdout.split()[1]
    assert "MD5:" + k["fingerprint"] == want

    names = {r["Name"] for r in osc.json("keypair", "list")}
    assert "cli-imported" in names
    # Key pairs belong to users: another user does not see it.
    assert "cli-imported" not in {r["Name"] for r in osc.json("keypair", "list",
                                                                env=demo["env"])}
    osc.fail("keypair", "show", "cli-imported", env=demo["env"])

    p = osc.fail("keypair", "create", "--public-key", str(tmp_path / "rsa.pub"),
                 "cli-imported")
    assert "Key pair 'cli-imported' already exists." in p.stderr
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-rsa AAAAnot-a-key nobody\n")
    p = osc.fail("keypair", "create", "--public-key", str(bad), "cli-bad")
    assert "Keypair data is invalid" in p.stderr

    osc.ok("keypair", "delete", "cli-imported")
    assert "cli-imported" not in {r["Name"] for r in osc.json("keypair", "list")}
    p = osc.fail("keypair", "delete", "cli-imported")
    assert p.returncode != 0
