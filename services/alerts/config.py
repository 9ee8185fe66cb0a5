"""Alerts settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.settings import ServiceSettings


class AlertsSettings(ServiceSettings):
    """Alerts knobs on top of the shared settings."""

    # Safety-net schedule: every site is evaluated this often (0: off), over the last hours.
    alerts_eval_interval_s: float = Field(default=300.0, ge=0)
    alerts_eval_lookback_h: int = Field(default=48, ge=1, le=24 * 31)
    # Delivery worker poll period (0: off); group_wait: how long the first pending
    # notification of a channel waits for others, so a flood becomes one message.
    alerts_delivery_poll_s: float = Field(default=1.0, ge=0)
    alerts_group_wait_s: float = Field(default=30.0, ge=0)
    alerts_group_max: int = Field(default=50, ge=1, le=1000)
    # Retries: delay = base * 2^(attempt-1), capped; after max attempts a delivery is 'failed'
    # (kept, listed, and sent again by POST /v1/deliveries/{id}/retry).
    alerts_retry_base_s: float = Field(default=2.0, gt=0)
    alerts_retry_max_delay_s: float = Field(default=600.0, gt=0)
    alerts_delivery_max_attempts: int = Field(default=12, ge=1)
    # An incident last seen longer ago than this (a backfill of history) is recorded but not
    # notified: nobody needs a page about last month.
    alerts_notify_max_age_s: int = Field(default=6 * 3600, ge=0)
    alerts_log_notifications: bool = True
    alerts_webhook_url: str = ""
    alerts_webhook_secret: str = ""
    alerts_webhook_timeout_s: float = Field(default=5.0, gt=0)
    alerts_webhook_min_severity: Literal["warning", "critical"] = "warning"
    alerts_smtp_host: str = ""
    alerts_smtp_port: int = 25
    alerts_smtp_starttls: bool = False
    alerts_smtp_user: str = ""
    alerts_smtp_password: str = ""
    alerts_smtp_from: str = "spe-alerts@localhost"
    alerts_smtp_to: str = Field(default="", description="comma-separated recipients")
    alerts_smtp_timeout_s: float = Field(default=10.0, gt=0)
    alerts_email_min_severity: Literal["warning", "critical"] = "warning"
    # Links in notifications point here (the gateway's public URL), when set.
    alerts_public_url: str = ""
