"""Settings for usage accounting, ``/metrics`` and the log format.

``usage.db_path`` empty means "beside the config file" (``<config>.usage.db``);
a config read from the environment keeps usage in memory only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config_values import ConfigError, _choice, _get, _int

LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class ObserveSettings:
    usage_enabled: bool = True
    usage_db_path: str = ""
    raw_retention_days: int = 7
    hourly_retention_days: int = 90
    log_bodies: bool = False
    log_body_max_bytes: int = 4096
    metrics_enabled: bool = True
    metrics_token: str = ""
    log_format: str = "text"

    def __repr__(self) -> str:  # the metrics token is a secret
        return f"ObserveSettings(usage={self.usage_enabled}, metrics={self.metrics_enabled})"


def parse_observe(data: dict) -> ObserveSettings:
    d = ObserveSettings()
    raw_days = _int(data, "usage.retention_raw_days", d.raw_retention_days, 1, 3650)
    hourly_days = _int(data, "usage.retention_hourly_days", d.hourly_retention_days, 1, 3650)
    if hourly_days < raw_days:
        raise ConfigError("usage.retention_hourly_days",
                          "must be at least usage.retention_raw_days")
    return ObserveSettings(
        usage_enabled=_get(data, "usage.enabled", bool, d.usage_enabled),
        usage_db_path=_get(data, "usage.db_path", str, d.usage_db_path).strip(),
        raw_retention_days=raw_days,
        hourly_retention_days=hourly_days,
        log_bodies=_get(data, "usage.log_bodies", bool, d.log_bodies),
        log_body_max_bytes=_int(data, "usage.log_body_max_bytes", d.log_body_max_bytes,
                                256, 1 << 20),
        metrics_enabled=_get(data, "metrics.enabled", bool, d.metrics_enabled),
        metrics_token=_get(data, "metrics.token", str, d.metrics_token).strip(),
        log_format=_choice(data, "log.format", d.log_format, LOG_FORMATS),
    )
