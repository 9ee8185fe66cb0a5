"""Gateway settings."""

from __future__ import annotations

from pydantic import Field, model_validator

from services.common.settings import DEFAULT_SECRET, InsecureSettings, ServiceSettings

DEFAULT_ADMIN_PASSWORD = "changethis"


class GatewaySettings(ServiceSettings):
    """Gateway knobs on top of the shared settings."""

    # First admin, created on startup when the users table is empty (empty password: none).
    admin_username: str = "admin"
    admin_password: str = DEFAULT_ADMIN_PASSWORD
    refresh_token_days: int = Field(default=14, ge=1)
    # Failed logins: per username and per client address within the window, then a lockout.
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_window_s: int = Field(default=900, ge=1)
    login_lockout_s: int = Field(default=900, ge=1)
    # How long a user's role / active flag or an API token's state is cached per process:
    # deactivation, demotion and revocation reach every replica within this delay.
    auth_cache_s: float = Field(default=5.0, ge=0)
    # Seconds a cockpit read (a site's readings, balance, weather, forecast, deficit histogram)
    # is served from the gateway process's memory (0: off). Writes through the same process
    # drop the site's entries at once; data written elsewhere shows up within this delay (the
    # same bound as AUTH_CACHE_S; the cockpit itself polls every 30 s by default).
    gateway_read_cache_s: float = Field(default=5.0, ge=0, le=60)
    # Lifetime of the token the gateway mints for each caller when calling an internal service.
    upstream_token_s: int = Field(default=120, ge=30)
    # Uploads are processed before the internal service answers: they get a longer read timeout.
    import_timeout_s: float = Field(default=300.0, gt=0)
    # The same variable ingest reads: an import over it is refused here, before it is forwarded.
    ingest_max_upload_mb: int = Field(default=200, ge=1)
    # Retry-After (seconds) sent with a 503 when an internal service does not answer.
    upstream_retry_after_s: int = Field(default=5, ge=1)
    # Timeout of each internal service's /ready call made by /ready and /api/v1/status.
    status_timeout_s: float = Field(default=2.0, gt=0)
    # The built web UI (frontend/ builds into services/gateway/static); empty: that folder.
    gateway_static_dir: str = ""

    # Exports: longest period of an Excel / PDF report (both are built whole in memory; the
    # CSV export streams and has no such bound).
    report_max_days: int = Field(default=366, ge=1, le=3 * 366)
    # Scheduled reports: the worker polls every REPORTS_POLL_S (0: off); a daily report covers
    # the site's previous local day and is due at REPORTS_SEND_HOUR local time, a weekly one
    # covers Monday-Sunday and is due on Monday at that hour.
    reports_poll_s: float = Field(default=30.0, ge=0)
    reports_send_hour: int = Field(default=6, ge=0, le=23)
    # A failed send is retried after base * 2^(attempt-1) s (capped); after the last attempt
    # the delivery is 'failed' (listed, and sent again on request).
    reports_retry_base_s: float = Field(default=60.0, gt=0)
    reports_retry_max_delay_s: float = Field(default=3600.0, gt=0)
    reports_max_attempts: int = Field(default=8, ge=1)
    # A delivery being sent is leased this long: if its gateway dies mid-send, another takes it.
    reports_lease_s: float = Field(default=600.0, gt=0)
    reports_smtp_from: str = "spe-reports@localhost"
    # The SMTP relay is the one alert e-mails use: the same variables, read by both services.
    alerts_smtp_host: str = ""
    alerts_smtp_port: int = 25
    alerts_smtp_starttls: bool = False
    alerts_smtp_user: str = ""
    alerts_smtp_password: str = ""
    alerts_smtp_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _refuse_default_admin_password_in_production(self) -> GatewaySettings:
        if (
            self.environment == "production"
            and self.admin_password
            and (
                self.admin_password in (DEFAULT_ADMIN_PASSWORD, DEFAULT_SECRET)
                or len(self.admin_password) < 12
            )
        ):
            raise InsecureSettings(
                "ADMIN_PASSWORD is the default or shorter than 12 characters; set a strong "
                "ADMIN_PASSWORD (or leave it empty once an admin exists) before starting in "
                "production"
            )
        return self
