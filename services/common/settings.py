"""Service settings read from the environment (and `.env`), one class per service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "changethis"


class InsecureSettings(RuntimeError):
    """Raised when a production deployment still uses a default secret."""


class ServiceSettings(BaseSettings):
    """Settings every service shares; a service subclasses it for its own port and knobs."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means the embedded PostgreSQL started by make run",
    )
    db_pool_size: int = 5
    # Connections of the read pool that hot read routes use (exactly this many, per worker).
    db_read_pool_size: int = Field(default=8, ge=1)
    # Seconds a connection attempt may take before the request is answered 503.
    db_connect_timeout_s: int = Field(default=5, ge=1)
    # Retry-After of the 503 a request gets while the database is unreachable.
    db_retry_after_s: int = Field(default=2, ge=1)
    secret_key: str = DEFAULT_SECRET
    jwt_issuer: str = "spe-gateway"
    jwt_audience: str = "spe"
    access_token_minutes: int = 15
    log_level: str = "INFO"
    log_json: bool = True
    http_timeout_s: float = 5.0
    # Largest request body any route accepts (file imports have their own, larger limit).
    max_body_mb: float = Field(default=16.0, gt=0)

    host: str = "127.0.0.1"
    gateway_port: int = 8000
    ingest_port: int = 8001
    forecast_port: int = 8002
    alerts_port: int = 8003
    # uvicorn worker processes per service (services.common.serve); more than one switches
    # Prometheus metrics to multiprocess mode.
    gateway_workers: int = Field(default=1, ge=1, le=64)
    ingest_workers: int = Field(default=1, ge=1, le=64)
    forecast_workers: int = Field(default=1, ge=1, le=64)
    alerts_workers: int = Field(default=1, ge=1, le=64)
    ingest_url: str = ""
    forecast_url: str = ""
    alerts_url: str = ""

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> ServiceSettings:
        if self.environment == "production" and (
            self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32
        ):
            raise InsecureSettings(
                "SECRET_KEY is the default or shorter than 32 characters; "
                "set a random SECRET_KEY before starting in production"
            )
        for name in ("ingest", "forecast", "alerts"):
            if not getattr(self, f"{name}_url"):
                setattr(self, f"{name}_url", f"http://127.0.0.1:{getattr(self, f'{name}_port')}")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver named explicitly."""
        return to_sqlalchemy_url(self.database_url)


def to_sqlalchemy_url(url: str) -> str:
    """Turn a libpq-style URL (``postgresql://``) into SQLAlchemy's psycopg 3 form."""
    if not url:
        raise RuntimeError("DATABASE_URL is not set; start the stack with `make run`")
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
