"""Server metadata (properties) and tags through the real `openstack` CLI.

One real QEMU server (the guest image `oxistack-guest`, flavor m1.tiny) is
booted for the module and deleted at its end, so that later modules see no
server of ours.
"""

from __future__ import annotations

import os
import time

import pytest

GUEST = "oxistack-guest"
V = ("--os-compute-api-version", "2.26")


@pytest.fixture(scope="module")
def vm(osc):
    if not os.environ.get("OXISTACK_GUEST_IMAGE"):
        pytest.fail("OXISTACK_GUEST_IMAGE is not set (guest/build.sh builds the image)")
    server = osc.json(
        "server", "create", "--image", GUEST, "--flavor", "m1.tiny",
        "--property", "origin=cli", "--wait", "meta-vm",
    )
    assert server["status"] == "ACTIVE"
    yield server["id"]
    osc.ok("server", "delete", "--wait", server["id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not any(s["ID"] == server["id"] for s in osc.json("server", "list")):
            return
        time.sleep(0.5)
    raise AssertionError("meta-vm was not deleted")


def _show(osc, sid: str) -> dict:
    return osc.json(*V, "server", "show", sid)


def test_set_and_unset_property_and_tag(osc, vm):
    shown = _show(osc, vm)
    assert shown["properties"] == {"origin": "cli"}
    assert shown["tags"] == []

    osc.ok(*V, "server", "set", "--property", "a=b", "--tag", "t1", vm)
    shown = _show(osc, vm)
    assert shown["properties"] == {"origin": "cli", "a": "b"}
    assert shown["tags"] == ["t1"]

    osc.ok(*V, "server", "set", "--property", "a=c", "--tag", "t2", vm)
    shown = _show(osc, vm)
    assert shown["properties"] == {"origin": "cli", "a": "c"}
    assert sorted(shown["tags"]) == ["t1", "t2"]

    osc.ok(*V, "server", "unset", "--property", "a", "--tag", "t1", vm)
    shown = _show(osc, vm)
    assert shown["properties"] == {"origin": "cli"}
    assert shown["tags"] == ["t2"]

    # The tag filter of the list finds it.
    listed = osc.json(*V, "server", "list", "--tags", "t2")
    assert [s["ID"] for s in listed] == [vm]


def test_bad_input_is_refused(osc, vm):
    p = osc.fail(*V, "server", "set", "--tag", "a,b", vm)
    assert "is invalid" in p.stderr
    osc.fail("server", "unset", "--property", "nope", vm)


def test_diagnostics_of_a_running_guest(osc, vm):
    d = osc.json("--os-compute-api-version", "2.48", "server", "show", "--diagnostics", vm)
    assert d["state"] == "running"
    assert d["driver"] == "libvirt"  # the API names one of Nova's drivers
    assert d["hypervisor"] in ("qemu", "kvm")
    assert d["num_cpus"] == 1
    assert d["cpu_details"][0]["time"] > 0
    assert d["memory_details"]["maximum"] == 512
    assert d["memory_details"]["used"] > 0
    assert d["uptime"] >= 0
