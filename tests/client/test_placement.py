"""Placement as the `openstack resource provider ...` commands (the pinned
osc-placement plugin) see it, against a live `oxistack up`.

The commands pass --os-placement-api-version so that each feature is used at
the microversion that introduced it (traits 1.6, aggregates with generation
1.19, nested providers 1.14, candidates 1.10+).
"""

from __future__ import annotations

import uuid

import pytest

V = ("--os-placement-api-version", "1.39")


def pl(osc, *args):
    return osc.json(*V, *args)


@pytest.fixture(scope="module")
def compute_node(osc):
    rp = pl(osc, "resource", "provider", "create", "cn-client-1")
    yield rp
    osc.run(*V, "resource", "provider", "delete", rp["uuid"])


def test_provider_create_list_show_set(osc, compute_node):
    listed = pl(osc, "resource", "provider", "list")
    assert compute_node["uuid"] in {r["uuid"] for r in listed}
    shown = pl(osc, "resource", "provider", "show", compute_node["uuid"])
    assert shown["name"] == "cn-client-1"
    assert shown["generation"] == 0
    child = pl(osc, "resource", "provider", "create", "--parent-provider", compute_node["uuid"], "numa0")
    assert child["root_provider_uuid"] == compute_node["uuid"]
    renamed = pl(osc, "resource", "provider", "set", "--name", "numa-zero", "--parent-provider", compute_node["uuid"], child["uuid"])
    assert renamed["name"] == "numa-zero"
    tree = pl(osc, "resource", "provider", "list", "--in-tree", compute_node["uuid"])
    assert {r["uuid"] for r in tree} == {compute_node["uuid"], child["uuid"]}
    osc.ok(*V, "resource", "provider", "delete", child["uuid"])


def test_inventory_set_list_show_delete(osc, compute_node):
    u = compute_node["uuid"]
    rows = pl(
        osc, "resource", "provider", "inventory", "set", u,
        "--resource", "VCPU=16", "--resource", "VCPU:allocation_ratio=2.0",
        "--resource", "MEMORY_MB=8192", "--resource", "MEMORY_MB:reserved=512",
        "--resource", "DISK_GB=100",
    )
    by_class = {r["resource_class"]: r for r in rows}
    assert by_class["VCPU"]["total"] == 16
    assert by_class["VCPU"]["allocation_ratio"] == 2.0
    assert by_class["MEMORY_MB"]["reserved"] == 512
    shown = pl(osc, "resource", "provider", "inventory", "show", u, "DISK_GB")
    assert shown["total"] == 100
    osc.ok(*V, "resource", "provider", "inventory", "delete", u, "--resource-class", "DISK_GB")
    rows = pl(osc, "resource", "provider", "inventory", "list", u)
    assert {r["resource_class"] for r in rows} == {"VCPU", "MEMORY_MB"}


def test_resource_class_and_traits(osc, compute_node):
    osc.ok(*V, "resource", "class", "create", "CUSTOM_GPU_CLIENT")
    classes = pl(osc, "resource", "class", "list")
    assert "CUSTOM_GPU_CLIENT" in {c["name"] for c in classes}
    assert "VCPU" in {c["name"] for c in classes}
    osc.ok(*V, "trait", "create", "CUSTOM_FAST_CLIENT")
    traits = pl(osc, "trait", "list")
    assert "CUSTOM_FAST_CLIENT" in {t["name"] for t in traits}
    assert "HW_CPU_X86_AVX2" in {t["name"] for t in traits}
    rows = pl(osc, "resource", "provider", "trait", "set", compute_node["uuid"],
              "--trait", "CUSTOM_FAST_CLIENT", "--trait", "HW_CPU_X86_AVX2")
    assert {r["name"] for r in rows} == {"CUSTOM_FAST_CLIENT", "HW_CPU_X86_AVX2"}
    # A trait in use cannot be deleted; a standard one never.
    assert osc.run(*V, "trait", "delete", "CUSTOM_FAST_CLIENT").returncode != 0
    assert osc.run(*V, "trait", "delete", "HW_CPU_X86_AVX2").returncode != 0
    osc.ok(*V, "resource", "class", "delete", "CUSTOM_GPU_CLIENT")


def test_aggregates(osc, compute_node):
    agg = str(uuid.uuid4())
    gen = pl(osc, "resource", "provider", "show", compute_node["uuid"])["generation"]
    rows = pl(osc, "resource", "provider", "aggregate", "set", compute_node["uuid"],
              "--aggregate", agg, "--generation", str(gen))
    assert {r["uuid"] for r in rows} == {agg}
    listed = pl(osc, "resource", "provider", "list", "--member-of", agg)
    assert [r["uuid"] for r in listed] == [compute_node["uuid"]]


def test_allocations_usage_and_candidates(osc, compute_node):
    u = compute_node["uuid"]
    consumer = str(uuid.uuid4())
    project = str(uuid.uuid4())
    user = str(uuid.uuid4())
    cands = pl(osc, "allocation", "candidate", "list", "--resource", "VCPU=4",
               "--resource", "MEMORY_MB=1024", "--required", "HW_CPU_X86_AVX2")
    assert u in {c["resource provider"] for c in cands}
    rows = pl(osc, "resource", "provider", "allocation", "set", consumer,
              "--allocation", f"rp={u},VCPU=4,MEMORY_MB=1024",
              "--project-id", project, "--user-id", user,
              "--consumer-type", "INSTANCE")
    assert {r["resource_provider"] for r in rows} == {u}
    shown = pl(osc, "resource", "provider", "allocation", "show", consumer)
    assert shown[0]["resources"] == {"VCPU": 4, "MEMORY_MB": 1024}
    usages = pl(osc, "resource", "provider", "usage", "show", u)
    assert {r["resource_class"]: r["usage"] for r in usages}["VCPU"] == 4
    # Before 1.38 the totals are per class (osc-placement prints them so).
    totals = osc.json("--os-placement-api-version", "1.9", "resource", "usage", "show", project)
    assert {r["resource_class"]: r["usage"] for r in totals}["MEMORY_MB"] == 1024
    # More than the capacity (16 * 2.0 - 4 = 28 VCPU left) is refused.
    other = str(uuid.uuid4())
    p = osc.run(*V, "resource", "provider", "allocation", "set", other,
                "--allocation", f"rp={u},VCPU=29", "--project-id", project,
                "--user-id", user, "--consumer-type", "INSTANCE")
    assert p.returncode != 0
    assert "capacity" in (p.stderr + p.stdout)
    # A provider with allocations cannot be deleted.
    assert osc.run(*V, "resource", "provider", "delete", u).returncode != 0
    osc.ok(*V, "resource", "provider", "allocation", "delete", consumer)
    usages = pl(osc, "resource", "provider", "usage", "show", u)
    assert {r["resource_class"]: r["usage"] for r in usages}["VCPU"] == 0
