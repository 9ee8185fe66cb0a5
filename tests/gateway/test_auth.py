"""Login, token checks, lockout, refresh rotation and logout, on the real auth schema."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jose import jwt
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from services.common.settings import InsecureSettings
from services.gateway.config import GatewaySettings
from services.gateway.models import AuditEntry, RefreshToken, User
from services.gateway.service import ensure_first_admin
from tests.conftest import TEST_SECRET
from tests.gateway.conftest import PASSWORD, access_token, login, make_user


def _me(client: TestClient, token: str) -> Any:
    return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_login_returns_tokens_that_authenticate(client: TestClient, session: Session) -> None:
    user = make_user(session, role="operator")

    r = login(client, user.username)
    me = _me(client, r.json()["access_token"])

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["role"] == "operator"
    assert body["refresh_token"].startswith("spr_")
    assert r.headers["cache-control"] == "no-store"
    assert me.json() == {"kind": "user", "name": user.username, "role": "operator", "scopes": []}


def test_login_accepts_username_in_any_case(client: TestClient, session: Session) -> None:
    make_user(session, username="alice.martin")

    r = login(client, " Alice.Martin ")

    assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", ["wrong_password", "unknown_user", "inactive_user"])
def test_login_refused_is_401_with_one_message(
    case: str, client: TestClient, session: Session
) -> None:
    user = make_user(session, active=case != "inactive_user")
    username = "nobody" if case == "unknown_user" else user.username
    password = "not the password" if case == "wrong_password" else PASSWORD

    r = login(client, username, password)

    assert r.status_code == 401
    assert r.json() == {"error": "NotAuthenticated", "detail": "wrong username or password"}


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "placeholder", "role": "admin", "type": "access", "iat": now, "nbf": now,
            "exp": now + 600, "iss": "spe-gateway", "aud": "spe"}  # fmt: skip
    return base | overrides


def _unsigned(claims: dict[str, Any]) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _signed(**overrides: Any) -> Callable[[str], str]:
    return lambda sub: jwt.encode(_claims(sub=sub, **overrides), TEST_SECRET, algorithm="HS256")


REJECTED: dict[str, Callable[[str], str]] = {
    "alg_none": lambda sub: _unsigned(_claims(sub=sub)),
    "wrong_signature": lambda sub: jwt.encode(_claims(sub=sub), "x" * 40, algorithm="HS256"),
    "expired": _signed(exp=int(time.time()) - 10),
    "wrong_audience": _signed(aud="another-app"),
    "wrong_issuer": _signed(iss="evil"),
    "refresh_type_jwt": _signed(type="refresh"),
    "service_type_jwt": _signed(type="service"),
    "hs512": lambda sub: jwt.encode(_claims(sub=sub), TEST_SECRET, algorithm="HS512"),
    "unknown_user": lambda _: _signed()("ghost"),
    "garbage": lambda _: "not.a.jwt",
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_gateway_rejects_bad_access_token(case: str, client: TestClient, session: Session) -> None:
    user = make_user(session, role="admin")

    r = _me(client, REJECTED[case](user.username))

    assert r.status_code == 401, r.text
    assert r.json()["error"] == "NotAuthenticated"
    assert r.headers["www-authenticate"] == "Bearer"


def test_refresh_token_is_not_an_access_token(client: TestClient, session: Session) -> None:
    user = make_user(session)
    refresh = login(client, user.username).json()["refresh_token"]

    r = _me(client, refresh)

    assert r.status_code == 401


def test_missing_credentials_is_401_saying_how(client: TestClient) -> None:
    r = client.get("/api/v1/sites")

    assert r.status_code == 401
    assert "Authorization: Bearer" in r.json()["detail"]


def test_deactivated_user_token_is_refused(
    client: TestClient, session: Session, gateway_settings: GatewaySettings
) -> None:
    user = make_user(session, active=False)

    r = _me(client, access_token(gateway_settings, user))

    assert r.status_code == 401
    assert "disabled" in r.json()["detail"]


def test_role_comes_from_the_database_not_the_token(
    client: TestClient, session: Session, gateway_settings: GatewaySettings
) -> None:
    user = make_user(session, role="viewer")
    forged_role = access_token(gateway_settings, User(username=user.username, role="admin"))

    r = client.get("/api/v1/users", headers={"Authorization": f"Bearer {forged_role}"})

    assert r.status_code == 403


def test_lockout_after_failures_answers_429_with_retry_after(
    client: TestClient, session: Session
) -> None:
    user = make_user(session)  # test settings: 3 failures per username

    first = [login(client, user.username, "wrong").status_code for _ in range(2)]
    third = login(client, user.username, "wrong")
    right_password_while_locked = login(client, user.username)

    assert first == [401, 401]
    assert third.status_code == 429
    assert third.json()["error"] == "TooManyRequests"
    assert int(third.headers["retry-after"]) == 900
    assert right_password_while_locked.status_code == 429
    assert 0 < int(right_password_while_locked.headers["retry-after"]) <= 900


def test_lockout_expires(client: TestClient, session: Session) -> None:
    user = make_user(session)
    for _ in range(3):
        login(client, user.username, "wrong")
    assert login(client, user.username).status_code == 429

    session.execute(
        text("UPDATE auth.login_throttle SET locked_until = clock_timestamp() - interval '1 s'")
    )
    r = login(client, user.username)

    assert r.status_code == 200, r.text


def test_lockout_counts_unknown_usernames_too(client: TestClient) -> None:
    codes = [login(client, "no-such-user", "guess").status_code for _ in range(3)]

    assert codes == [401, 401, 429]


def test_lockout_per_client_address_across_usernames(client: TestClient, session: Session) -> None:
    victim = make_user(session)  # test settings: 5 failures per address

    codes = [login(client, f"spray{i}", "guess").status_code for i in range(5)]
    victim_from_same_address = login(client, victim.username)

    assert codes == [401, 401, 401, 401, 429]
    assert victim_from_same_address.status_code == 429


def test_successful_login_resets_the_username_counter(client: TestClient, session: Session) -> None:
    user = make_user(session)
    login(client, user.username, "wrong")
    login(client, user.username, "wrong")
    assert login(client, user.username).status_code == 200

    codes = [login(client, user.username, "wrong").status_code for _ in range(2)]

    assert codes == [401, 401]


def test_failed_logins_are_counted_in_the_database(client: TestClient, session: Session) -> None:
    user = make_user(session)

    login(client, user.username, "wrong")

    failures = session.execute(
        text("SELECT failures FROM auth.login_throttle WHERE key = :k"),
        {"k": f"user:{user.username}"},
    ).scalar()
    assert failures == 1


def test_refresh_rotates_and_the_old_token_stops_working(
    client: TestClient, session: Session
) -> None:
    user = make_user(session)
    first = login(client, user.username).json()

    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    second = rotated.json()
    new_works = _me(client, second["access_token"])

    assert rotated.status_code == 200, rotated.text
    assert second["refresh_token"] != first["refresh_token"]
    assert new_works.status_code == 200
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert again.status_code == 401


def test_reusing_a_rotated_refresh_token_revokes_the_whole_session(
    client: TestClient, session: Session
) -> None:
    user = make_user(session)
    stolen = login(client, user.username).json()["refresh_token"]
    legit = client.post("/api/v1/auth/refresh", json={"refresh_token": stolen}).json()

    reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": stolen})
    legit_next = client.post("/api/v1/auth/refresh", json={"refresh_token": legit["refresh_token"]})

    assert reuse.status_code == 401 and "reused" in reuse.json()["detail"]
    assert legit_next.status_code == 401


def test_expired_refresh_token_is_refused(client: TestClient, session: Session) -> None:
    user = make_user(session)
    refresh = login(client, user.username).json()["refresh_token"]
    session.execute(
        text(
            "UPDATE auth.refresh_token SET expires_at = now() - interval '1 s' WHERE user_id = :u"
        ),
        {"u": user.id},
    )

    r = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})

    assert r.status_code == 401 and r.json()["detail"] == "refresh token expired"


def test_logout_revokes_the_refresh_token(client: TestClient, session: Session) -> None:
    user = make_user(session)
    refresh = login(client, user.username).json()["refresh_token"]

    out = client.post("/api/v1/auth/logout", json={"refresh_token": refresh})
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})

    assert out.status_code == 204
    assert after.status_code == 401
    revoked = session.scalar(select(RefreshToken.revoked_at).where(RefreshToken.user_id == user.id))
    assert revoked is not None


def test_logout_with_unknown_token_is_204(client: TestClient) -> None:
    r = client.post("/api/v1/auth/logout", json={"refresh_token": "spr_unknown"})

    assert r.status_code == 204


def test_password_change_ends_existing_sessions(
    client: TestClient, session: Session, gateway_settings: GatewaySettings, headers_for: Any
) -> None:
    user = make_user(session)
    tokens = login(client, user.username).json()
    old_access = jwt.encode(
        _claims(sub=user.username, role=user.role, iat=int(time.time()) - 5),
        TEST_SECRET,
        algorithm="HS256",
    )

    r = client.patch(
        f"/api/v1/users/{user.username}",
        json={"password": "a brand new passphrase"},
        headers=headers_for("admin"),
    )

    assert r.status_code == 200, r.text
    assert _me(client, old_access).status_code == 401
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    assert login(client, user.username, "a brand new passphrase").status_code == 200


def test_login_success_and_failure_are_audited(client: TestClient, session: Session) -> None:
    user = make_user(session)

    login(client, user.username, "wrong")
    login(client, user.username)

    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.target == user.username).order_by(AuditEntry.id)
    ).all()
    assert [e.action for e in entries] == ["auth.login_failed", "auth.login"]
    assert entries[0].client_addr == "testclient"
    assert "wrong" not in json.dumps(entries[0].detail)


def test_first_admin_is_created_only_when_no_user_exists(
    session: Session, gateway_settings: GatewaySettings
) -> None:
    session.execute(text("DELETE FROM auth.refresh_token"))
    session.execute(text("DELETE FROM auth.users"))
    settings = gateway_settings.model_copy(
        update={"admin_username": "root", "admin_password": "first admin passphrase"}
    )

    created = ensure_first_admin(session, settings)
    second = ensure_first_admin(session, settings)

    assert created == "root" and second is None
    admin = session.scalar(select(User).where(User.username == "root"))
    assert admin is not None and admin.role == "admin"
    assert admin.password_hash.startswith("$argon2id$")


def test_production_refuses_default_admin_password() -> None:
    secret = "s" * 40
    with pytest.raises(InsecureSettings):
        GatewaySettings(environment="production", secret_key=secret, admin_password="changethis")
    with pytest.raises(InsecureSettings):
        GatewaySettings(environment="production", secret_key=secret, admin_password="short")
    ok = GatewaySettings(environment="production", secret_key=secret, admin_password="")
    assert ok.admin_password == ""
