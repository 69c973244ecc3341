"""Image (Glance v2) behaviour as seen by the real `openstack` CLI.

Every test shells out to python-openstackclient against the session's live
`oxistack up` (see conftest.py). Image files are made with qemu-img (Debian
package qemu-utils, which the test command installs). When
OXISTACK_GUEST_IMAGE names the guest image (scripts/test.sh builds it), the
server registers it at start as the public image `oxistack-guest`. The
restart test is deliberately the last test in this file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from oxistack_harness import OxistackServer, default_binary

GUEST = "oxistack-guest"
MIB = 1 << 20


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("images")
    qcow2 = d / "disk.qcow2"
    _qemu_img("create", "-q", "-f", "qcow2", str(qcow2), "64M")
    # Some data in it, so that the file is more than its header.
    raw = d / "disk.raw"
    raw.write_bytes(os.urandom(MIB + 12345))
    filled = d / "filled.qcow2"
    _qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(filled))
    base = d / "base.qcow2"
    _qemu_img("create", "-q", "-f", "qcow2", str(base), "16M")
    overlay = d / "overlay.qcow2"
    _qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay))
    big = d / "big.raw"
    big.write_bytes(os.urandom(3 * MIB))
    return {"qcow2": qcow2, "raw": raw, "filled": filled, "overlay": overlay,
            "big": big, "dir": d}


@pytest.fixture(scope="module")
def demo2(osc, cloud) -> dict:
    """A second project with a member user (carol), and her CLI environment."""
    p = osc.json("project", "create", "img-demo")
    osc.json("user", "create", "--password", "carol-pw", "carol")
    osc.ok("role", "add", "--project", "img-demo", "--user", "carol", "member")
    return {"project": p, "env": cloud.password_env("carol", "carol-pw", "img-demo")}


def _image_names(osc, *args, env=None) -> set:
    return {r["Name"] for r in osc.json("image", "list", *args, env=env)}


def _create(osc, name, path, fmt, *extra) -> dict:
    return osc.json("image", "create", "--file", str(path), "--disk-format", fmt,
                    "--container-format", "bare", *extra, name)


# ------------------------------------------------------------- the guest


def test_guest_image_is_registered_and_public(osc):
    if not os.environ.get("OXISTACK_GUEST_IMAGE"):
        pytest.skip("OXISTACK_GUEST_IMAGE is not set (guest/build.sh builds the image)")
    img = osc.json("image", "show", GUEST)
    assert img["status"] == "active"
    assert img["visibility"] == "public"
    assert img["disk_format"] == "qcow2"
    assert img["container_format"] == "bare"
    assert img["checksum"] == _md5(Path(os.environ["OXISTACK_GUEST_IMAGE"]))
    assert img["virtual_size"] >= 64 * MIB


# ---------------------------------------------------------- life cycle


def test_create_from_file_list_and_show(osc, files):
    img = _create(osc, "cli-qcow2", files["filled"], "qcow2", "--property", "os_distro=cirros",
                  "--min-ram", "64", "--tag", "first")
    assert img["status"] == "active"
    assert img["size"] == files["filled"].stat().st_size
    assert img["checksum"] == _md5(files["filled"])
    # qemu-img rounds the raw size up to whole sectors.
    assert img["virtual_size"] == (MIB + 12345 + 511) // 512 * 512
    assert img["visibility"] == "shared"
    assert img["min_ram"] == 64
    assert "first" in img["tags"]
    assert img["properties"]["os_distro"] == "cirros"
    assert "cli-qcow2" in _image_names(osc)
    shown = osc.json("image", "show", "cli-qcow2")
    assert shown["id"] == img["id"]
    assert shown["properties"]["os_hash_algo"] == "sha512"
    long = osc.json("image", "list", "--long", "--name", "cli-qcow2")
    assert long[0]["Disk Format"] == "qcow2"
    assert long[0]["Checksum"] == img["checksum"]
    assert "first" in long[0]["Tags"]


def test_set_and_unset_properties_and_tags(osc):
    osc.ok("image", "set", "--property", "hw_disk_bus=virtio", "--property", "a=b",
           "--tag", "t1", "--tag", "t2", "--min-disk", "3", "--name", "cli-renamed", "cli-qcow2")
    img = osc.json("image", "show", "cli-renamed")
    assert img["properties"]["hw_disk_bus"] == "virtio"
    assert img["properties"]["a"] == "b"
    assert {"t1", "t2", "first"} <= set(img["tags"])
    assert img["min_disk"] == 3
    osc.ok("image", "unset", "--property", "a", "--tag", "t1", "cli-renamed")
    img = osc.json("image", "show", "cli-renamed")
    assert "a" not in img["properties"]
    assert "t1" not in img["tags"] and "t2" in img["tags"]
    # Filters the CLI offers.
    assert "cli-renamed" in _image_names(osc, "--tag", "t2")
    assert "cli-renamed" in _image_names(osc, "--property", "hw_disk_bus=virtio")
    assert "cli-renamed" not in _image_names(osc, "--property", "hw_disk_bus=ide")
    osc.ok("image", "set", "--name", "cli-qcow2", "cli-renamed")


def test_save_and_compare_checksums(osc, files, tmp_path):
    raw = _create(osc, "cli-raw", files["raw"], "raw")
    assert raw["virtual_size"] == files["raw"].stat().st_size
    out = tmp_path / "saved.raw"
    osc.ok("image", "save", "--file", str(out), "cli-raw")
    assert out.read_bytes() == files["raw"].read_bytes()
    assert _md5(out) == raw["checksum"] == _md5(files["raw"])
    out2 = tmp_path / "saved.qcow2"
    osc.ok("image", "save", "--file", str(out2), "cli-qcow2")
    assert _md5(out2) == _md5(files["filled"])
    # The saved qcow2 is still a valid qcow2.
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(out2)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2"


def test_interoperable_import(osc, files):
    info = osc.json("image", "import", "info")
    assert "glance-direct" in info["import-methods"]
    img = osc.json("image", "create", "--import", "--file", str(files["filled"]),
                   "--disk-format", "qcow2", "--container-format", "bare", "cli-imported")
    deadline = time.monotonic() + 60
    while True:
        shown = osc.json("image", "show", img["id"])
        if shown["status"] == "active" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert shown["status"] == "active", shown
    assert shown["checksum"] == _md5(files["filled"])
    tasks = osc.json("image", "task", "list")
    assert any(t["Type"] == "api_image_import" and t["Status"] == "success" for t in tasks)
    osc.ok("image", "delete", img["id"])


def test_share_with_another_project(osc, demo2):
    img = osc.json("image", "show", "cli-raw")
    assert img["visibility"] == "shared"
    carol = demo2["env"]
    assert "cli-raw" not in _image_names(osc, env=carol)
    member = osc.json("image", "add", "project", "cli-raw", "img-demo")
    assert member["status"] == "pending"
    assert member["member_id"] == demo2["project"]["id"]
    # Pending: not in carol's list until she accepts.
    assert "cli-raw" not in _image_names(osc, env=carol)
    osc.ok("image", "set", "--accept", img["id"], env=carol)
    assert "cli-raw" in _image_names(osc, env=carol)
    assert "cli-raw" in _image_names(osc, "--shared", env=carol)
    members = osc.json("image", "member", "list", "cli-raw")
    assert [(m["Member ID"], m["Status"]) for m in members] == [(demo2["project"]["id"], "accepted")]
    # She may read it but not change or delete it.
    osc.fail("image", "set", "--name", "stolen", img["id"], env=carol)
    osc.fail("image", "delete", img["id"], env=carol)
    # Nor publish her own images.
    p = osc.fail("image", "create", "--public", "carol-public", env=carol)
    assert "403" in p.stderr or "not authorized" in p.stderr.lower(), p.stderr
    osc.ok("image", "set", "--reject", img["id"], env=carol)
    assert "cli-raw" not in _image_names(osc, env=carol)
    osc.ok("image", "remove", "project", "cli-raw", "img-demo")
    assert osc.json("image", "member", "list", "cli-raw") == []


def test_deactivate_and_reactivate(osc, tmp_path):
    osc.ok("image", "set", "--deactivate", "cli-raw")
    assert osc.json("image", "show", "cli-raw")["status"] == "deactivated"
    osc.ok("image", "set", "--activate", "cli-raw")
    assert osc.json("image", "show", "cli-raw")["status"] == "active"
    osc.ok("image", "save", "--file", str(tmp_path / "x"), "cli-raw")


def test_protected_image_cannot_be_deleted(osc, files):
    _create(osc, "cli-protected", files["qcow2"], "qcow2", "--protected")
    p = osc.fail("image", "delete", "cli-protected")
    assert "protected" in (p.stdout + p.stderr)
    assert osc.json("image", "show", "cli-protected")["status"] == "active"
    osc.ok("image", "set", "--unprotected", "cli-protected")
    osc.ok("image", "delete", "cli-protected")
    osc.fail("image", "show", "cli-protected")


def test_delete(osc, files):
    img = _create(osc, "cli-doomed", files["qcow2"], "qcow2")
    osc.ok("image", "delete", img["id"])
    assert "cli-doomed" not in _image_names(osc)
    osc.fail("image", "show", img["id"])


# ------------------------------------------------------------- bad input


def _no_active(osc, name) -> None:
    rows = osc.json("image", "list", "--name", name, "--long")
    assert all(r["Status"] != "active" for r in rows), rows


def test_disk_format_that_does_not_match_the_data(osc, files):
    p = osc.fail("image", "create", "--file", str(files["raw"]), "--disk-format", "qcow2",
                 "--container-format", "bare", "cli-mismatch")
    assert "does not match" in p.stderr, p.stderr
    _no_active(osc, "cli-mismatch")
    p = osc.fail("image", "create", "--file", str(files["qcow2"]), "--disk-format", "vmdk",
                 "--container-format", "bare", "cli-mismatch2")
    assert "does not match" in p.stderr, p.stderr
    _no_active(osc, "cli-mismatch2")


def test_qcow2_with_backing_file_is_refused(osc, files):
    for fmt in ("qcow2", "raw"):
        p = osc.fail("image", "create", "--file", str(files["overlay"]), "--disk-format", fmt,
                     "--container-format", "bare", f"cli-backing-{fmt}")
        assert "backing file" in p.stderr, p.stderr
        _no_active(osc, f"cli-backing-{fmt}")


@pytest.fixture(scope="module")
def capped(files):
    """A second cloud whose image_size_cap is 2 MiB."""
    d = files["dir"] / "capped"
    saved = dict(os.environ)
    os.environ["OXISTACK_IMAGE__IMAGE_SIZE_CAP"] = str(2 * MIB)
    os.environ.pop("OXISTACK_GUEST_IMAGE", None)
    server = OxistackServer(default_binary(), d / "data", log_path=d / "oxistack.log")
    try:
        server.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield server
    assert server.stop() == 0


def test_oversize_upload_is_refused(osc, capped, files):
    env = capped.client_env()
    p = osc.fail("image", "create", "--file", str(files["big"]), "--disk-format", "raw",
                 "--container-format", "bare", "too-big", env=env)
    assert "413" in p.stderr or "too large" in p.stderr, p.stderr
    rows = osc.json("image", "list", "--name", "too-big", "--long", env=env)
    assert all(r["Status"] != "active" for r in rows), rows
    # Nothing partial is left in the store.
    incoming = capped.data_dir / "images" / ".incoming"
    assert list(incoming.iterdir()) == []
    ok = osc.json("image", "create", "--file", str(files["raw"]), "--disk-format", "raw",
                  "--container-format", "bare", "fits", env=env)
    assert ok["status"] == "active"


def test_quota_exceeded(osc, demo2, files):
    carol = demo2["env"]
    for resource in ("image_count_total", "image_size_total"):
        osc.ok("registered", "limit", "create", "--service", "glance",
               "--default-limit", "-1", "--region", "RegionOne", resource)
    osc.ok("limit", "create", "--project", "img-demo", "--service", "glance",
           "--resource-limit", "1", "--region", "RegionOne", "image_size_total")
    osc.ok("limit", "create", "--project", "img-demo", "--service", "glance",
           "--resource-limit", "2", "--region", "RegionOne", "image_count_total")
    # 1 MiB of data allowed: a 3 MiB upload is refused while it streams.
    p = osc.fail("image", "create", "--file", str(files["big"]), "--disk-format", "raw",
                 "--container-format", "bare", "carol-big", env=carol)
    assert "image_size_total" in p.stderr, p.stderr
    _no_active(osc, "carol-big")
    small = osc.json("image", "create", "--file", str(files["qcow2"]), "--disk-format", "qcow2",
                     "--container-format", "bare", "carol-small", env=carol)
    assert small["status"] == "active"
    # The client deleted the image whose upload failed; two images are
    # allowed, a third is refused.
    assert _image_names(osc, env=carol) >= {"carol-small"}
    assert "carol-big" not in _image_names(osc, env=carol)
    osc.json("image", "create", "carol-2", env=carol)
    p = osc.fail("image", "create", "carol-3", env=carol)
    assert "image_count_total" in p.stderr, p.stderr


def test_malformed_json_patch(osc, cloud):
    token = osc.json("token", "issue")["id"]
    img = osc.json("image", "show", "cli-raw")
    url = f"{cloud.server.base_url}/image/v2/images/{img['id']}"
    h = {"X-Auth-Token": token,
         "Content-Type": "application/openstack-images-v2.1-json-patch"}
    r = requests.patch(url, headers=h, data='[{"op": "replace", "path": "/name", ', timeout=10)
    assert r.status_code == 400, r.text
    assert "Malformed JSON" in r.json()["message"]
    r = requests.patch(url, headers=h, data='{"op": "replace"}', timeout=10)
    assert r.status_code == 400, r.text
    r = requests.patch(url, headers=h, data='[{"op": "swap", "path": "/name", "value": 1}]',
                       timeout=10)
    assert r.status_code == 400, r.text
    r = requests.patch(url, headers={**h, "Content-Type": "application/json"},
                       data="[]", timeout=10)
    assert r.status_code == 415, r.text
    assert osc.json("image", "show", img["id"])["name"] == "cli-raw"


# ------------------------------------------------------------- restart


def test_restart_keeps_images_and_registers_the_guest_once(osc, cloud, tmp_path):
    before = {r["ID"]: r["Name"] for r in osc.json("image", "list")}
    raw = osc.json("image", "show", "cli-raw")
    assert cloud.server.stop() == 0
    cloud.server.start()
    after = {r["ID"]: r["Name"] for r in osc.json("image", "list")}
    assert after == before
    if os.environ.get("OXISTACK_GUEST_IMAGE"):
        assert list(after.values()).count(GUEST) == 1
    out = tmp_path / "again.raw"
    osc.ok("image", "save", "--file", str(out), "cli-raw")
    assert _md5(out) == raw["checksum"]
