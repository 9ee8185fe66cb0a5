"""Domain metrics of the alerts service (labels of bounded cardinality: no site, no rule id)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OPEN_INCIDENTS = Gauge(
    "alerts_open_incidents",
    "Incidents not resolved yet (open or acknowledged), by severity",
    ["severity"],
    # Set from the database (the truth for every worker): the latest value written wins.
    multiprocess_mode="mostrecent",
)
EVALUATIONS = Counter(
    "alerts_evaluations_total",
    "Site evaluations, by trigger (api, schedule) and outcome (ok, busy, error)",
    ["trigger", "outcome"],
)
RULE_EVALUATIONS = Counter(
    "alerts_rule_evaluations_total",
    "Rule evaluations at a site, by rule kind and status (ok, firing, skipped, disabled)",
    ["kind", "status"],
)
DELIVERIES = Counter(
    "alerts_notification_deliveries_total",
    "Notification delivery attempts, by channel and outcome (delivered, failed)",
    ["channel", "outcome"],
)
DELIVERY_FAILURES = Counter(
    "alerts_notification_failures_total",
    "Failed notification delivery attempts (each one is retried), by channel",
    ["channel"],
)
for _severity in ("critical", "warning"):
    OPEN_INCIDENTS.labels(_severity).set(0)
