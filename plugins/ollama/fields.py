"""The top-level fields of Ollama's chat and generate bodies that carry no
conversation: checked as Ollama's own decoding checks them (a wrong type is
a 400 before anything is spent), then mostly ignored, since nothing is
loaded, templated or tokenised here.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ds2proxy.dialects.sampling import no_logprobs, ollama_sampling
from ds2proxy.dialects.validate import Bounds, boolean, integer, string
from ds2proxy.plugin_api import InvalidRequest

# Go's time.ParseDuration, which Ollama uses for a keep_alive string.
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}
_NUMBER = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
_UNIT = r"(?:ns|us|µs|μs|ms|s|m|h)"
_DURATION = re.compile(rf"[+-]?(?:{_NUMBER}{_UNIT})+")
_PART = re.compile(rf"({_NUMBER})({_UNIT})")


def keep_alive_seconds(value: Any) -> float | None:
    """``keep_alive``: seconds as a number or a Go duration string ("5m",
    "1h30m", "0"); negative means "forever". None when absent."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return math.inf if value < 0 else float(value)
    if isinstance(value, str) and value in ("0", "+0", "-0"):
        return 0.0
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise InvalidRequest("keep_alive must be a duration such as \"5m\" or a number of "
                             "seconds", param="keep_alive")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(value))
    return math.inf if value.startswith("-") else seconds


# Ollama's integer options; any JSON number is taken for one, its fraction
# dropped (Go's int64(float64) in Options.FromMap): "seed": 1.5 is seed 1.
INTEGER_OPTIONS = frozenset({"num_predict", "seed", "top_k", "num_keep", "repeat_last_n",
                             "num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread",
                             "draft_num_predict"})
_INT64 = (-(2**63), 2**63 - 1)


def options_object(value: Any) -> dict[str, Any]:
    """``options``, numbers read as Ollama reads them: a whole number written
    as a float (``5.0``) is an integer, and an integer option written with a
    fraction is truncated toward zero (``1.5`` → 1), as Ollama converts it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("options must be an object", param="options")
    return {key: _read_number(key, item) for key, item in value.items()}


def _read_number(key: str, item: Any) -> Any:
    """One option's value: a float made an integer where Ollama makes it one
    (held within int64, where Go's conversion would overflow)."""
    if not isinstance(item, float) or not math.isfinite(item):
        return item
    if item.is_integer() or key in INTEGER_OPTIONS:
        return min(max(int(item), _INT64[0]), _INT64[1])
    return item


def check_embeddings_fields(body: dict[str, Any]) -> None:
    """``keep_alive`` and ``options`` of ``/api/embeddings``, checked as for a turn."""
    keep_alive_seconds(body.get("keep_alive"))
    ollama_sampling(options_object(body.get("options")))


def check_embed_fields(body: dict[str, Any]) -> int | None:
    """``/api/embed``'s ``keep_alive``, ``options`` and ``truncate``; the
    ``dimensions`` wanted (0, Ollama's "unset", is None)."""
    check_embeddings_fields(body)
    boolean(body.get("truncate"), "truncate")
    dimensions = integer(body.get("dimensions"), "dimensions", Bounds(0, None))
    return dimensions or None


def check_flags(body: dict[str, Any]) -> None:
    """``truncate``, ``shift`` and ``logprobs`` (booleans), ``top_logprobs``
    (0–20): the first two accepted, not applied (nothing is truncated here);
    asking for log probabilities is a 400, since the web chat reports none."""
    for key in ("truncate", "shift", "logprobs"):
        boolean(body.get(key), key)
    integer(body.get("top_logprobs"), "top_logprobs", Bounds(0, 20))
    no_logprobs(body.get("logprobs"), "logprobs")
    no_logprobs(body.get("top_logprobs"), "top_logprobs")


def check_generate_extras(body: dict[str, Any]) -> None:
    """``suffix``, ``template`` (strings), ``raw`` (boolean) and ``context``
    (token ids); raw mode takes no template, system or context, as in Ollama."""
    template = string(body.get("template"), "template")
    string(body.get("suffix"), "suffix")
    context = body.get("context")
    if context is not None and (not isinstance(context, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in context)):
        raise InvalidRequest("context must be a list of integers", param="context")
    if boolean(body.get("raw"), "raw") and (template or body.get("system") or context):
        raise InvalidRequest("raw mode does not support template, system, or context",
                             param="raw")
