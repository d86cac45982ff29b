"""Account health (cooldowns, login backoff, operator overrides) and pacing."""

from .classify import Failure, classify
from .pacing import Pacer
from .record import COOLING, DISABLED, HEALTHY, LOGIN_FAILING, STATES, AccountHealth
from .settings import HealthSettings, PacingSettings, parse_health
from .tracker import HealthTracker

__all__ = ["COOLING", "DISABLED", "HEALTHY", "LOGIN_FAILING", "STATES", "AccountHealth",
           "Failure", "HealthSettings", "HealthTracker", "Pacer", "PacingSettings", "classify",
           "parse_health"]
