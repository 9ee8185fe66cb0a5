"""JWT issue and verification (python-jose, HS256) shared by the gateway and internal services."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import JWTError, jwt

from services.common.errors import Forbidden, NotAuthenticated
from services.common.settings import ServiceSettings

ALGORITHM = "HS256"
TokenType = Literal["access", "refresh", "service"]
Role = Literal["viewer", "operator", "admin", "service"]
# A service token may do what an operator does on an internal service, never admin work.
ROLE_RANK: dict[str, int] = {"viewer": 1, "operator": 2, "service": 2, "admin": 3}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (through the gateway) or another service."""

    subject: str
    role: str
    token_type: str
    scopes: tuple[str, ...] = field(default_factory=tuple)
    issued_at: int = 0  # the token's iat (epoch seconds)

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK[minimum]


def issue_token(
    settings: ServiceSettings,
    *,
    subject: str,
    role: str,
    token_type: TokenType,
    ttl_s: int,
    scopes: tuple[str, ...] = (),
) -> str:
    """Sign a token; ``type`` keeps a token made for one purpose from serving another."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "role": role,
        "type": token_type,
        "scopes": list(scopes),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


def service_token(settings: ServiceSettings, service: str, ttl_s: int = 300) -> str:
    """A short-lived token one service presents to another."""
    return issue_token(
        settings, subject=f"service:{service}", role="service", token_type="service", ttl_s=ttl_s
    )


# Tokens already verified in this process: (token, secret, audience, issuer, types) -> (nbf,
# exp, caller). A token is signed and immutable, so checking its signature again on each request
# (~0.1 ms with python-jose) tells nothing new; only the clock is checked again on a hit.
_VERIFIED: dict[tuple[str, str, str, str, tuple[str, ...]], tuple[float, float, Principal]] = {}
_VERIFIED_MAX = 4096


def verify_token(
    settings: ServiceSettings, token: str, allowed_types: tuple[str, ...] = ("access", "service")
) -> Principal:
    """Check signature, algorithm, expiry, audience, issuer and type; return the caller."""
    key = (token, settings.secret_key, settings.jwt_audience, settings.jwt_issuer, allowed_types)
    hit = _VERIFIED.get(key)
    if hit is not None:
        nbf, exp, principal = hit
        if nbf <= time.time() < exp:
            return principal
        _VERIFIED.pop(key, None)  # expired (or not yet valid): the full check says why
    try:
        claims = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require_exp": True, "require_sub": True},
        )
    except JWTError as exc:
        raise NotAuthenticated(f"invalid token: {exc}") from None
    token_type = claims.get("type")
    if token_type not in allowed_types:
        raise NotAuthenticated(f"a {token_type!r} token is not accepted here")
    role = claims.get("role")
    if role not in ROLE_RANK:
        raise NotAuthenticated("token carries no valid role")
    principal = Principal(
        subject=str(claims["sub"]),
        role=role,
        token_type=token_type,
        scopes=tuple(claims.get("scopes") or ()),
        issued_at=_int_claim(claims, "iat"),
    )
    if len(_VERIFIED) >= _VERIFIED_MAX:  # bounded: tokens of departed callers go
        _VERIFIED.clear()
    nbf = _int_claim(claims, "nbf")
    _VERIFIED[key] = (float(nbf), float(_int_claim(claims, "exp")), principal)
    return principal


def _int_claim(claims: dict[str, object], name: str) -> int:
    value = claims.get(name)
    return int(value) if isinstance(value, int | float) else 0


def bearer_token(request: Request) -> str:
    """The token from ``Authorization: Bearer …``, or a 401 saying what is missing."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
    return token.strip()


# Declared as a security scheme so the OpenAPI document says which routes need a token; the
# check itself stays ours (auto_error=False), so a missing token gets our 401 and message.
_bearer = HTTPBearer(auto_error=False, description="an access or service JWT")


# The dependencies below are async on purpose: they only compute, and a sync dependency would
# cost a hop to the thread pool (and back) on every request (HTTPBearer's own is async too).
async def current_principal(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Dependency: the verified caller of an internal-service route."""
    return verify_token(request.app.state.settings, bearer_token(request))


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_role(minimum: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency factory: the caller, if their role is at least ``minimum``."""

    async def _check(principal: PrincipalDep) -> Principal:
        if not principal.has_role(minimum):
            raise Forbidden(f"this action needs the {minimum!r} role; you are {principal.role!r}")
        return principal

    return _check


ReaderDep = Annotated[Principal, Depends(require_role("viewer"))]
WriterDep = Annotated[Principal, Depends(require_role("operator"))]
