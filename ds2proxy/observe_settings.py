"""Settings for usage accounting (``usage``), ``/metrics`` (``metrics``) and
the log format (``log``).

``usage.db_path`` empty means "the state file beside the config"
(``<config>.state.sqlite``); a config read from the environment keeps usage
in memory only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config_values import ConfigError, stripped
from .settings_schema import setting

LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class UsageSettings:
    enabled: bool = setting(
        True, "Record every API request (key, model, account, status, latency, tokens) for the "
        "request log, the charts and the per-key quotas.")
    db_path: str = setting(
        "", "The state SQLite file (usage rows and account health); empty: <config "
        "name>.state.sqlite beside the config (in memory when the config comes from the "
        "environment). A relative path is relative to the config's folder.", hot=False,
        check=stripped)
    retention_raw_days: int = setting(
        7, "How long each request's row (and per-minute totals) is kept.", min=1, max=3650)
    retention_hourly_days: int = setting(
        90, "How long per-hour totals are kept (per-day totals: ten times as long); at least "
        "usage.retention_raw_days.", min=1, max=3650)
    log_bodies: bool = setting(
        False, "Also keep each request's body in the request log, cut to "
        "usage.log_body_max_bytes, credentials blanked.")
    log_body_max_bytes: int = setting(
        4096, "How much of a request body the request log keeps.", min=256, max=1 << 20)

    def __post_init__(self) -> None:
        if self.retention_hourly_days < self.retention_raw_days:
            raise ConfigError("usage.retention_hourly_days",
                              "must be at least usage.retention_raw_days")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = setting(True, "Serve Prometheus metrics at /metrics (false: 404).")
    token: str = setting(
        "", "A Bearer token that may read /metrics besides the admin key; empty: admin key or "
        "admin JWT only.", secret=True, check=stripped)


@dataclass(frozen=True, slots=True)
class LogSettings:
    format: str = setting(
        "text", "text (one line per record, one concise line per request) or json (one JSON "
        "object per line); --log-format overrides it.", choices=LOG_FORMATS, hot=False)
