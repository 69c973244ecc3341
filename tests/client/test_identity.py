"""Identity (Keystone v3) behaviour as seen by the real `openstack` CLI.

Every test shells out to python-openstackclient against a live
`oxistack up` (see conftest.py). The database is empty at session start, so
fixed names (demo, alice, ci, ...) are safe. The restart test stops and
starts the server and is deliberately the last test in this file.
"""

from __future__ import annotations

import os
import stat

import pytest
import requests
import yaml

from oxistack_harness import dump_yaml


# --------------------------------------------------------------- helpers


def _rows(listing, **match):
    """Rows of a `-f json` listing whose columns equal the given values."""
    return [r for r in listing if all(r.get(k) == v for k, v in match.items())]


def _names(listing, column="Name"):
    return {r[column] for r in listing}


def _token_headers(token, subject=None):
    h = {"X-Auth-Token": token}
    if subject:
        h["X-Subject-Token"] = subject
    return h


# --------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def admin_token(osc):
    return osc.json("token issue")


@pytest.fixture(scope="module")
def demo(osc):
    p = osc.json("project", "create", "--description", "demo project", "demo")
    assert p["name"] == "demo"
    assert p["enabled"] is True
    assert p["domain_id"] == "default"
    return p


@pytest.fixture(scope="module")
def alice(osc):
    u = osc.json("user", "create", "--password", "x", "alice")
    assert u["name"] == "alice"
    assert u["enabled"] is True
    assert u["domain_id"] == "default"
    return u


@pytest.fixture(scope="module")
def alice_member_of_demo(osc, demo, alice):
    out = osc.ok("role", "add", "--project", "demo", "--user", "alice", "member")
    assert out.strip() == ""
    return True


# ------------------------------------------------------- bootstrap state


def test_clouds_yaml_is_private_and_project_scoped(cloud):
    st = os.stat(cloud.clouds_yaml)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    cfg = yaml.safe_load(cloud.clouds_yaml.read_text())
    c = cfg["clouds"]["oxistack"]
    auth = c["auth"]
    assert auth["auth_url"].rstrip("/") in (cloud.identity_url, cloud.v3)
    assert auth.get("password")
    assert auth.get("username") or auth.get("user_id")
    assert auth.get("project_name") or auth.get("project_id")


def test_version_discovery(cloud):
    r = requests.get(cloud.v3, timeout=10)
    assert r.status_code == 200
    v = r.json()["version"]
    assert v["id"].startswith("v3.")
    assert v["status"] == "stable"
    # The unversioned root lists v3 (keystoneauth discovers from here when
    # auth_url has no version suffix).
    r = requests.get(cloud.identity_url, timeout=10)
    assert r.status_code in (200, 300)
    ids = [x["id"] for x in r.json()["versions"]["values"]]
    assert any(i.startswith("v3.") for i in ids), ids


def test_token_issue(osc, cloud):
    t = osc.json("token issue")
    for k in ("id", "expires", "project_id", "user_id"):
        assert t.get(k), k
    # The token is accepted by the server.
    r = requests.get(
        f"{cloud.v3}/auth/tokens",
        headers=_token_headers(t["id"], t["id"]),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    body = r.json()["token"]
    assert body["user"]["id"] == t["user_id"]
    assert body["project"]["id"] == t["project_id"]
    assert body["user"]["name"] == "admin"
    assert "admin" in {role["name"] for role in body["roles"]}


def test_wrong_password_is_rejected(osc):
    p = osc.fail("--os-password", "definitely-not-the-password", "token", "issue")
    assert "401" in p.stderr, p.stderr
    p = osc.fail("--os-username", "no-such-user", "token", "issue")
    assert "401" in p.stderr, p.stderr


def test_default_roles_exist(osc):
    names = _names(osc.json("role list"))
    assert {"admin", "member", "reader"} <= names


# --------------------------------------------------- the demo walkthrough


def test_project_create_demo(osc, demo):
    shown = osc.json("project", "show", "demo")
    assert shown["id"] == demo["id"]
    assert shown["description"] == "demo project"
    assert "demo" in _names(osc.json("project list"))


def test_user_create_alice(osc, alice):
    shown = osc.json("user", "show", "alice")
    assert shown["id"] == alice["id"]
    assert "alice" in _names(osc.json("user list"))


def test_role_add_and_assignment_list(osc, alice_member_of_demo):
    rows = osc.json("role", "assignment", "list", "--names")
    hits = _rows(rows, User="alice@Default", Project="demo@Default", Role="member")
    assert len(hits) == 1, rows
    assert hits[0]["Group"] == "" and hits[0]["Domain"] == ""
    assert hits[0]["Inherited"] is False


def test_alice_can_authenticate_to_demo(osc, cloud, alice, demo, alice_member_of_demo):
    t = osc.json("token issue", env=cloud.password_env("alice", "x", "demo"))
    assert t["user_id"] == alice["id"]
    assert t["project_id"] == demo["id"]


def test_catalog_list(osc, cloud):
    cat = osc.json("catalog list")
    ident = _rows(cat, Type="identity")
    assert len(ident) == 1, cat
    eps = ident[0]["Endpoints"]
    public = [e for e in eps if e["interface"] == "public"]
    assert public, eps
    assert public[0]["url"].rstrip("/") in (cloud.identity_url, cloud.v3)
    shown = osc.json("catalog", "show", "identity")
    assert shown["type"] == "identity"


def test_endpoint_list(osc, cloud):
    eps = osc.json("endpoint list")
    ident = _rows(eps, **{"Service Type": "identity"})
    assert ident, eps
    assert {"public"} <= {e["Interface"] for e in ident}
    for e in ident:
        assert e["Enabled"] is True
        assert e["URL"].startswith(cloud.server.base_url), e
    filtered = osc.json(
        "endpoint", "list", "--service", "identity", "--interface", "public"
    )
    assert filtered and all(e["Interface"] == "public" for e in filtered)
    assert all(e["Service Type"] == "identity" for e in filtered)
    shown = osc.json("endpoint", "show", filtered[0]["ID"])
    assert shown["id"] == filtered[0]["ID"]
    assert shown["service_type"] == "identity"


# -------------------------------------------------- application credentials


def test_application_credential(osc, cloud, admin_token, tmp_path):
    ac = osc.json("application", "credential", "create", "ci")
    assert ac["Name"] == "ci"
    assert ac["ID"] and ac["Secret"]
    assert ac["Project ID"] == admin_token["project_id"]
    assert "ci" in _names(osc.json("application credential list"))
    shown = osc.json("application", "credential", "show", "ci")
    assert shown["ID"] == ac["ID"]
    assert "Secret" not in shown or not shown["Secret"]

    # 1. A second clouds.yaml entry using the application credential.
    cfg = yaml.safe_load(cloud.clouds_yaml.read_text())
    base = cfg["clouds"]["oxistack"]
    cfg["clouds"]["oxistack-ci"] = {
        "auth_type": "v3applicationcredential",
        "auth": {
            "auth_url": base["auth"]["auth_url"],
            "application_credential_id": ac["ID"],
            "application_credential_secret": ac["Secret"],
        },
        "identity_api_version": 3,
    }
    if "region_name" in base:
        cfg["clouds"]["oxistack-ci"]["region_name"] = base["region_name"]
    appcred_yaml = tmp_path / "clouds.yaml"
    dump_yaml(cfg, appcred_yaml)  # 0600: it holds secrets
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(appcred_yaml), OS_CLOUD="oxistack-ci")
    t = osc.json("token issue", env=env)
    assert t["user_id"] == admin_token["user_id"]
    assert t["project_id"] == admin_token["project_id"]
    # ... and the token is usable.
    assert "admin" in _names(osc.json("project list", env=env))

    # 2. Plain environment variables, by name + user this time.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(
        OS_AUTH_TYPE="v3applicationcredential",
        OS_AUTH_URL=cloud.identity_url,
        OS_IDENTITY_API_VERSION="3",
        OS_APPLICATION_CREDENTIAL_ID=ac["ID"],
        OS_APPLICATION_CREDENTIAL_SECRET=ac["Secret"],
        OS_CLIENT_CONFIG_FILE=str(cloud.workdir / "no-clouds.yaml"),
    )
    t = osc.json("token issue", env=env)
    assert t["project_id"] == admin_token["project_id"]

    # 3. Wrong secret fails; deleting the credential stops it working.
    bad = dict(env, OS_APPLICATION_CREDENTIAL_SECRET="wrong-secret")
    assert "401" in osc.fail("token", "issue", env=bad).stderr
    osc.ok("application", "credential", "delete", "ci")
    p = osc.fail("token", "issue", env=env)
    assert "401" in p.stderr or "404" in p.stderr, p.stderr
    assert "ci" not in _names(osc.json("application credential list"))


# ------------------------------------------------------------------ CRUD


def test_domain_crud(osc):
    d = osc.json("domain", "create", "--description", "first", "acme")
    assert d["name"] == "acme" and d["enabled"] is True
    assert osc.json("domain", "show", "acme")["id"] == d["id"]
    assert "acme" in _names(osc.json("domain list"))
    assert "Default" in _names(osc.json("domain list"))

    osc.ok("domain", "set", "--description", "second", "acme")
    assert osc.json("domain", "show", "acme")["description"] == "second"

    # An enabled domain cannot be deleted.
    osc.fail("domain", "delete", "acme")
    osc.ok("domain", "set", "--disable", "acme")
    assert osc.json("domain", "show", d["id"])["enabled"] is False
    osc.ok("domain", "delete", "acme")
    osc.fail("domain", "show", d["id"])
    assert "acme" not in _names(osc.json("domain list"))


def test_project_crud(osc):
    d = osc.json("domain", "create", "projdom")
    p = osc.json(
        "project", "create", "--domain", "projdom", "--description", "one", "widgets"
    )
    assert p["domain_id"] == d["id"]
    assert p["enabled"] is True
    assert osc.json("project", "show", "--domain", "projdom", "widgets")["id"] == p["id"]
    assert "widgets" in _names(osc.json("project", "list", "--domain", "projdom"))
    assert "widgets" not in _names(osc.json("project", "list", "--domain", "default"))

    osc.ok(
        "project", "set", "--name", "gadgets", "--description", "two", "--disable",
        p["id"],
    )
    shown = osc.json("project", "show", p["id"])
    assert shown["name"] == "gadgets"
    assert shown["description"] == "two"
    assert shown["enabled"] is False

    # Names are unique per domain.
    osc.json("project", "create", "--domain", "projdom", "dup")
    osc.fail("project", "create", "--domain", "projdom", "dup")

    osc.ok("project", "delete", p["id"])
    osc.fail("project", "show", p["id"])
    osc.ok("project", "delete", "--domain", "projdom", "dup")
    osc.ok("domain", "set", "--disable", "projdom")
    osc.ok("domain", "delete", "projdom")


def test_user_crud(osc, cloud):
    u = osc.json(
        "user", "create", "--domain", "default", "--password", "pw-carol",
        "--email", "carol@example.com", "--description", "carol", "carol",
    )
    assert u["email"] == "carol@example.com"
    assert u["enabled"] is True
    assert "password" not in u
    assert "carol" in _names(osc.json("user", "list", "--domain", "default"))

    osc.ok("user", "set", "--email", "c@example.org", "--disable", "carol")
    shown = osc.json("user", "show", u["id"])
    assert shown["email"] == "c@example.org"
    assert shown["enabled"] is False
    # A disabled user cannot authenticate (unscoped).
    p = osc.fail("token", "issue", env=cloud.password_env("carol", "pw-carol", None))
    assert "401" in p.stderr, p.stderr
    osc.ok("user", "set", "--enable", "carol")
    osc.json("token issue", env=cloud.password_env("carol", "pw-carol", None))

    # Duplicate name in the same domain is a conflict.
    osc.fail("user", "create", "--domain", "default", "carol")

    osc.ok("user", "delete", "carol")
    osc.fail("user", "show", u["id"])
    assert "carol" not in _names(osc.json("user list"))


def test_group_crud_and_membership(osc, alice):
    g = osc.json("group", "create", "--description", "developers", "devs")
    assert g["name"] == "devs" and g["domain_id"] == "default"
    assert "devs" in _names(osc.json("group list"))
    osc.ok("group", "set", "--description", "the developers", "devs")
    assert osc.json("group", "show", "devs")["description"] == "the developers"

    osc.ok("group", "add", "user", "devs", "alice")
    out = osc.ok("group", "contains", "user", "devs", "alice")
    assert "alice in group devs" in out
    assert "alice" in _names(osc.json("user", "list", "--group", "devs"))
    assert "devs" in _names(osc.json("group", "list", "--user", "alice"))

    osc.ok("group", "remove", "user", "devs", "alice")
    p = osc.run("group", "contains", "user", "devs", "alice")
    assert "alice not in group devs" in p.stdout + p.stderr
    assert "alice" not in _names(osc.json("user", "list", "--group", "devs"))

    osc.ok("group", "delete", "devs")
    osc.fail("group", "show", g["id"])


def test_role_crud(osc):
    r = osc.json("role", "create", "--description", "reads audit logs", "auditor")
    assert r["name"] == "auditor"
    assert r["domain_id"] is None
    assert osc.json("role", "show", "auditor")["id"] == r["id"]
    assert "auditor" in _names(osc.json("role list"))
    osc.ok("role", "set", "--name", "auditor2", "--description", "x", r["id"])
    shown = osc.json("role", "show", r["id"])
    assert shown["name"] == "auditor2" and shown["description"] == "x"
    osc.fail("role", "create", "auditor2")
    osc.ok("role", "delete", "auditor2")
    osc.fail("role", "show", r["id"])

    # Domain-specific role.
    dr = osc.json("role", "create", "--domain", "default", "local-ops")
    assert dr["domain_id"] == "default"
    assert "local-ops" in _names(osc.json("role", "list", "--domain", "default"))
    assert "local-ops" not in _names(osc.json("role list"))
    osc.ok("role", "delete", "--domain", "default", "local-ops")


def test_role_assignment_filters(osc, alice, demo, alice_member_of_demo):
    osc.json("group", "create", "ops")
    osc.ok("group", "add", "user", "ops", "alice")
    osc.ok("role", "add", "--project", "demo", "--group", "ops", "reader")
    osc.ok("role", "add", "--domain", "default", "--user", "alice", "reader")
    try:
        # --user + --project
        rows = osc.json(
            "role", "assignment", "list", "--user", "alice", "--project", "demo", "--names"
        )
        assert [(r["Role"], r["User"], r["Project"]) for r in rows] == [
            ("member", "alice@Default", "demo@Default")
        ], rows

        # IDs (no --names)
        rows = osc.json("role", "assignment", "list", "--user", "alice", "--project", "demo")
        assert len(rows) == 1
        assert rows[0]["User"] == alice["id"] and rows[0]["Project"] == demo["id"]

        # --role
        rows = osc.json("role", "assignment", "list", "--role", "member", "--names")
        assert rows and all(r["Role"] == "member" for r in rows)
        assert _rows(rows, User="alice@Default", Project="demo@Default")

        # --project: user and group assignments on demo
        rows = osc.json("role", "assignment", "list", "--project", "demo", "--names")
        assert all(r["Project"] == "demo@Default" for r in rows)
        assert _rows(rows, User="alice@Default", Role="member")
        assert _rows(rows, Group="ops@Default", Role="reader")

        # --group
        rows = osc.json("role", "assignment", "list", "--group", "ops", "--names")
        assert [(r["Role"], r["Group"], r["Project"]) for r in rows] == [
            ("reader", "ops@Default", "demo@Default")
        ], rows

        # --domain
        rows = osc.json(
            "role", "assignment", "list", "--domain", "default", "--user", "alice",
            "--names",
        )
        assert [(r["Role"], r["Domain"]) for r in rows] == [("reader", "Default")], rows

        # --effective expands the group assignment onto alice.
        rows = osc.json(
            "role", "assignment", "list", "--effective", "--user", "alice",
            "--project", "demo", "--names",
        )
        assert rows and all(r["Group"] == "" for r in rows), rows
        assert all(r["User"] == "alice@Default" for r in rows)
        assert {"member", "reader"} <= {r["Role"] for r in rows}
    finally:
        osc.ok("role", "remove", "--domain", "default", "--user", "alice", "reader")
        osc.ok("role", "remove", "--project", "demo", "--group", "ops", "reader")
        osc.ok("group", "delete", "ops")
    rows = osc.json("role", "assignment", "list", "--user", "alice", "--names")
    assert [(r["Role"], r["Project"]) for r in rows] == [("member", "demo@Default")], rows


# ---------------------------------------------------------------- tokens


def test_token_revoke(osc, cloud):
    t = osc.json("token issue")["id"]
    url = f"{cloud.v3}/auth/tokens"
    assert requests.get(url, headers=_token_headers(t, t), timeout=10).status_code == 200
    # The token works as plain X-Auth-Token for the CLI too.
    token_cli = [
        "--os-auth-type", "admin_token", "--os-endpoint", cloud.v3, "--os-token", t,
    ]
    token_env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    token_env["OS_CLIENT_CONFIG_FILE"] = str(cloud.workdir / "no-clouds.yaml")
    osc.json(*token_cli, "project", "list", env=token_env)

    out = osc.ok("token", "revoke", t)
    assert out.strip() == ""

    r = requests.get(url, headers=_token_headers(t, t), timeout=10)
    assert r.status_code == 401, (r.status_code, r.text)
    r = requests.get(f"{cloud.v3}/projects", headers=_token_headers(t), timeout=10)
    assert r.status_code == 401, (r.status_code, r.text)
    p = osc.fail(*token_cli, "project", "list", env=token_env)
    assert "401" in p.stderr, p.stderr
    # Validated as the subject by a good token: not found.
    good = osc.json("token issue")["id"]
    r = requests.get(url, headers=_token_headers(good, t), timeout=10)
    assert r.status_code == 404, (r.status_code, r.text)
    # Other tokens are unaffected.
    assert requests.get(url, headers=_token_headers(good, good), timeout=10).status_code == 200


# -------------------------------------------------------------- passwords


def test_user_changes_own_password(osc, cloud, demo):
    osc.json("user", "create", "--password", "old-pw-1", "bob")
    osc.ok("role", "add", "--project", "demo", "--user", "bob", "member")
    old_env = cloud.password_env("bob", "old-pw-1", "demo")
    new_env = cloud.password_env("bob", "new-pw-2", "demo")
    before = osc.json("token issue", env=old_env)["id"]

    # Wrong original password is refused.
    p = osc.fail(
        "user", "password", "set", "--original-password", "nope",
        "--password", "new-pw-2", env=old_env,
    )
    assert "401" in p.stderr, p.stderr

    osc.ok(
        "user", "password", "set", "--original-password", "old-pw-1",
        "--password", "new-pw-2", env=old_env,
    )
    p = osc.fail("token", "issue", env=old_env)
    assert "401" in p.stderr, p.stderr
    t = osc.json("token issue", env=new_env)
    assert t["project_id"] == demo["id"]
    # Tokens issued before the change are no longer valid.
    r = requests.get(
        f"{cloud.v3}/auth/tokens", headers=_token_headers(before, before), timeout=10
    )
    assert r.status_code == 401, (r.status_code, r.text)


# ---------------------------------------------------------------- restart


def test_restart_keeps_state(osc, cloud, demo, alice):
    before_yaml = cloud.clouds_yaml.read_bytes()
    token = osc.json("token issue")["id"]

    rc = cloud.server.stop()
    assert rc == 0, f"oxistack exited with {rc} on SIGTERM"
    cloud.server.start()

    assert cloud.clouds_yaml.read_bytes() == before_yaml
    assert stat.S_IMODE(os.stat(cloud.clouds_yaml).st_mode) == 0o600
    assert osc.json("project", "show", "demo")["id"] == demo["id"]
    assert osc.json("user", "show", "alice")["id"] == alice["id"]
    rows = osc.json("role", "assignment", "list", "--user", "alice", "--names")
    assert _rows(rows, Project="demo@Default", Role="member")
    # Tokens issued before the restart stay valid (signing keys persisted).
    r = requests.get(
        f"{cloud.v3}/auth/tokens", headers=_token_headers(token, token), timeout=10
    )
    assert r.status_code == 200, (r.status_code, r.text)
