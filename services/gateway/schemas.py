"""Gateway API schemas: login, tokens, users, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from services.common.query_time import IsoDatetime

RoleName = Literal["viewer", "operator", "admin"]
ScopeName = Literal["read", "write"]
Username = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.@-]*$", examples=["alice"]),
]
# Long passphrases are welcome; the upper bound only stops a hashing DoS with megabyte inputs.
Password = Annotated[str, Field(min_length=12, max_length=256)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, examples=["alice"])
    password: str = Field(min_length=1, max_length=256, examples=["correct horse battery"])

    @field_validator("username")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return value.strip().lower()


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    """What a successful login or refresh returns."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="access token lifetime, seconds")
    refresh_token: str
    refresh_expires_in: int = Field(description="refresh token lifetime, seconds")
    username: str
    role: RoleName


class MeOut(BaseModel):
    """The authenticated caller."""

    kind: Literal["user", "api_token"]
    name: str
    role: RoleName
    scopes: list[str]


class UserIn(_In):
    username: Username
    password: Password
    role: RoleName = "viewer"
    active: StrictBool = True


class UserPatch(_In):
    password: Password | None = None
    role: RoleName | None = None
    active: StrictBool | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    role: RoleName
    active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class ApiTokenIn(_In):
    name: str = Field(min_length=1, max_length=100, examples=["power-bi"])
    scopes: list[ScopeName] = Field(
        default_factory=lambda: ["read"],  # type: ignore[arg-type]
        description="'read' allows GET only (the default); 'write' adds operator writes",
    )
    expires_at: IsoDatetime | None = Field(default=None, description="none: never expires")

    @field_validator("scopes")
    @classmethod
    def _with_read(cls, value: list[str]) -> list[str]:
        # Writing without reading makes no sense for an integration; keep the set canonical.
        return sorted(set(value) | {"read"})


class ApiTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str = Field(description="first characters of the secret, to recognise it")
    scopes: list[str]
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreated(ApiTokenOut):
    token: str = Field(description="the secret; shown this once, store it now")


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]
    client_addr: str | None


# --- scheduled reports ---------------------------------------------------------------------

SiteCode = Annotated[
    str,
    Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", examples=["LYON1"]),
]
# Deliberately loose (one @, no spaces): the SMTP relay is the judge of an address.
Email = Annotated[
    str,
    Field(max_length=320, pattern=r"^[^@\s,;]+@[^@\s,;]+$", examples=["control-room@example.com"]),
]


class ReportSubscriptionIn(_In):
    site: SiteCode
    format: Literal["pdf", "xlsx"] = "pdf"
    frequency: Literal["daily", "weekly"] = Field(
        default="daily",
        description="daily: the previous local day; weekly: the previous Monday-Sunday",
    )
    email: Email
    source: Literal["real", "simulated", "import"] | None = Field(
        default=None, description="only this source; null: one per interval (real first)"
    )


class ReportDeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subscription_id: int
    period_start: datetime
    period_end: datetime = Field(description="exclusive")
    status: Literal["pending", "sending", "retrying", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    sha256: str | None = Field(description="the report's data checksum, once built")
    bytes: int | None
    created_at: datetime
    delivered_at: datetime | None


class ReportSubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    site: str
    site_timezone: str
    format: str
    frequency: str
    email: str
    source: str | None
    created_by: str
    created_at: datetime
    active: bool
    next_run_at: datetime = Field(description="when the next period's report is due")
    last_delivery: ReportDeliveryOut | None = None


class ReportDeliveryPage(BaseModel):
    items: list[ReportDeliveryOut]
    next_before_id: int | None = Field(description="before_id of the next page; null: last page")
