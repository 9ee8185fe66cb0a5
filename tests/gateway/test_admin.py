"""Admin API: users, API tokens (scopes, X-API-Key, revocation), the append-only audit log."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from services.gateway.config import GatewaySettings
from services.gateway.models import ApiToken, AuditEntry, User
from tests.gateway.conftest import access_token, login, make_user

Headers = Callable[[str], dict[str, str]]


def _create_token(client: TestClient, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/tokens", json={"name": "power-bi", **body}, headers=admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_admin_creates_user_who_can_log_in(client: TestClient, headers_for: Headers) -> None:
    body = {"username": "bob", "password": "a long enough passphrase", "role": "operator"}

    created = client.post("/api/v1/users", json=body, headers=headers_for("admin"))
    logged_in = login(client, "bob", "a long enough passphrase")

    assert created.status_code == 201, created.text
    assert set(created.json()) == {
        "username", "role", "active", "created_at", "updated_at", "last_login_at"
    }  # fmt: skip
    assert logged_in.status_code == 200 and logged_in.json()["role"] == "operator"


def test_create_user_twice_is_conflict(client: TestClient, headers_for: Headers) -> None:
    admin = headers_for("admin")
    body = {"username": "carol", "password": "a long enough passphrase"}
    client.post("/api/v1/users", json=body, headers=admin)

    r = client.post("/api/v1/users", json=body, headers=admin)

    assert r.status_code == 409 and r.json()["error"] == "Conflict"


def test_create_user_with_short_password_is_422(client: TestClient, headers_for: Headers) -> None:
    r = client.post(
        "/api/v1/users",
        json={"username": "dave", "password": "short"},
        headers=headers_for("admin"),
    )

    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "password"]


def test_password_is_stored_as_argon2id(
    client: TestClient, session: Session, headers_for: Headers
) -> None:
    client.post(
        "/api/v1/users",
        json={"username": "erin", "password": "a long enough passphrase"},
        headers=headers_for("admin"),
    )

    stored = session.scalar(select(User.password_hash).where(User.username == "erin"))

    assert stored is not None and stored.startswith("$argon2id$")
    assert "a long enough passphrase" not in stored


def test_role_change_and_deactivation_are_audited_and_take_effect(
    client: TestClient, session: Session, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    user = make_user(session, role="viewer")

    promoted = client.patch(
        f"/api/v1/users/{user.username}", json={"role": "operator"}, headers=admin
    )
    deactivated = client.delete(f"/api/v1/users/{user.username}", headers=admin)
    login_after = login(client, user.username)

    assert promoted.status_code == 200 and promoted.json()["role"] == "operator"
    assert deactivated.status_code == 204
    assert login_after.status_code == 401
    actions = session.scalars(
        select(AuditEntry.action).where(AuditEntry.target == user.username).order_by(AuditEntry.id)
    ).all()
    assert actions == ["user.update", "user.deactivate", "auth.login_failed"]
    detail = session.scalar(
        select(AuditEntry.detail).where(
            AuditEntry.target == user.username, AuditEntry.action == "user.update"
        )
    )
    assert detail == {"role": {"from": "viewer", "to": "operator"}}


def test_last_admin_cannot_be_demoted(
    client: TestClient, session: Session, gateway_settings: GatewaySettings
) -> None:
    session.execute(text("UPDATE auth.users SET active = false WHERE role = 'admin'"))
    admin = make_user(session, role="admin")
    headers = {"Authorization": f"Bearer {access_token(gateway_settings, admin)}"}

    r = client.patch(f"/api/v1/users/{admin.username}", json={"role": "viewer"}, headers=headers)

    assert r.status_code == 409 and r.json()["error"] == "LastAdmin"


def test_unknown_user_is_404(client: TestClient, headers_for: Headers) -> None:
    r = client.get("/api/v1/users/nobody", headers=headers_for("admin"))

    assert r.status_code == 404 and r.json()["error"] == "UserNotFound"


def test_api_token_secret_is_shown_once_and_stored_hashed(
    client: TestClient, session: Session, headers_for: Headers
) -> None:
    admin = headers_for("admin")

    created = _create_token(client, admin)
    listed = client.get("/api/v1/tokens", headers=admin).json()

    secret = created["token"]
    assert secret.startswith("spe_") and len(secret) > 40
    assert created["scopes"] == ["read"] and created["prefix"] == secret[:12]
    assert all("token" not in t for t in listed)
    assert [t["prefix"] for t in listed if t["id"] == created["id"]] == [created["prefix"]]
    row = session.get(ApiToken, created["id"])
    assert row is not None and row.token_hash == hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_read_token_may_get_but_not_write(
    header: str, client: TestClient, headers_for: Headers
) -> None:
    secret = _create_token(client, headers_for("admin"))["token"]
    auth = {"Authorization": f"Bearer {secret}"} if header == "bearer" else {"X-API-Key": secret}

    me = client.get("/api/v1/auth/me", headers=auth)
    read = client.get("/api/v1/sites", headers=auth)
    write = client.post("/api/v1/readings/batch", json=[], headers=auth)

    assert me.json() == {
        "kind": "api_token",
        "name": "power-bi",
        "role": "viewer",
        "scopes": ["read"],
    }
    assert read.status_code == 200, read.text
    assert read.json()["subject"] == "token:power-bi" and read.json()["role"] == "viewer"
    assert write.status_code == 403 and "scopes" in write.json()["detail"]


def test_write_token_may_write_but_not_administer(client: TestClient, headers_for: Headers) -> None:
    secret = _create_token(client, headers_for("admin"), name="sap", scopes=["write"])["token"]
    auth = {"X-API-Key": secret}

    write = client.post("/api/v1/readings/batch", json=[], headers=auth)
    site = client.post("/api/v1/sites", json={}, headers=auth)
    users = client.get("/api/v1/users", headers=auth)

    assert write.status_code == 201 and write.json()["role"] == "operator"
    assert site.status_code == 403 and users.status_code == 403


def test_revoked_token_is_refused(
    client: TestClient, session: Session, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    token = _create_token(client, admin)
    auth = {"X-API-Key": token["token"]}
    assert client.get("/api/v1/auth/me", headers=auth).status_code == 200

    revoked = client.delete(f"/api/v1/tokens/{token['id']}", headers=admin)
    after = client.get("/api/v1/auth/me", headers=auth)

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert after.status_code == 401 and "revoked" in after.json()["detail"]
    actions = session.scalars(
        select(AuditEntry.action).where(AuditEntry.target == f"token:{token['id']}")
    ).all()
    assert sorted(actions) == ["token.create", "token.revoke"]


def test_expired_api_token_is_refused(client: TestClient, headers_for: Headers) -> None:
    token = _create_token(client, headers_for("admin"), expires_at="2020-01-01T00:00:00Z")

    r = client.get("/api/v1/auth/me", headers={"X-API-Key": token["token"]})

    assert r.status_code == 401


def test_unknown_api_token_and_non_token_api_key_are_refused(client: TestClient) -> None:
    unknown = client.get("/api/v1/auth/me", headers={"X-API-Key": "spe_" + "a" * 43})
    jwt_as_key = client.get("/api/v1/auth/me", headers={"X-API-Key": "eyJhbGciOi.x.y"})

    assert unknown.status_code == 401 and jwt_as_key.status_code == 401


def test_api_token_use_records_last_used_at(
    client: TestClient, session: Session, headers_for: Headers
) -> None:
    token = _create_token(client, headers_for("admin"))

    client.get("/api/v1/auth/me", headers={"X-API-Key": token["token"]})

    last_used = session.scalar(select(ApiToken.last_used_at).where(ApiToken.id == token["id"]))
    assert last_used is not None


def test_token_with_unknown_scope_is_422(client: TestClient, headers_for: Headers) -> None:
    r = client.post(
        "/api/v1/tokens", json={"name": "x", "scopes": ["admin"]}, headers=headers_for("admin")
    )

    assert r.status_code == 422


def test_huge_token_id_is_422_not_500(client: TestClient, headers_for: Headers) -> None:
    r = client.delete(f"/api/v1/tokens/{10**12}", headers=headers_for("admin"))

    assert r.status_code == 422


def test_audit_log_lists_newest_first_with_keyset_pages(
    client: TestClient, session: Session, headers_for: Headers
) -> None:
    admin = headers_for("admin")
    for i in range(3):
        client.post("/api/v1/tokens", json={"name": f"t{i}"}, headers=admin)

    page1 = client.get("/api/v1/audit?action=token.create&limit=2", headers=admin).json()
    page2 = client.get(
        f"/api/v1/audit?action=token.create&limit=2&before_id={page1[-1]['id']}", headers=admin
    ).json()

    names = [e["detail"]["name"] for e in page1 + page2]
    assert names[:3] == ["t2", "t1", "t0"]
    assert page1[0]["id"] > page1[1]["id"] > page2[0]["id"]


@pytest.mark.parametrize(
    "statement",
    ["UPDATE auth.audit_log SET actor = 'someone else'", "DELETE FROM auth.audit_log",
     "TRUNCATE auth.audit_log"],
)  # fmt: skip
def test_audit_log_is_append_only(statement: str, session: Session) -> None:
    session.add(AuditEntry(actor="tester", action="test.entry"))
    session.flush()

    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.execute(text(statement))

    assert session.scalar(select(AuditEntry.actor).where(AuditEntry.action == "test.entry")) == (
        "tester"
    )
