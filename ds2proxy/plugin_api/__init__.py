"""The public plugin API: the only ds2proxy module a dialect plugin imports
(besides the shared dialect codecs in :mod:`ds2proxy.dialects`).

A plugin is a distribution with an entry point in the group
``ds2proxy.plugins`` naming ``register(api: PluginContext) -> None``, called
once at start-up. Through ``api`` it may:

- declare: ``api.route(method, path, handler, errors=api.errors.openai,
  when=None)`` (``errors``: ``openai`` / ``anthropic`` / ``google`` /
  ``ollama`` or a function of its own; ``when`` lets two plugins share a
  route), ``api.claim_paths(prefix, errors=..., when=None)`` (the shape of
  404/405s below ``prefix``), ``api.require_api("1.0")``,
  ``api.on_startup(hook)`` /
  ``api.on_shutdown(hook)`` (async, no arguments), ``api.check_settings(check)``
  and ``api.on_settings(listener)``, ``api.register_model(id, native)`` and
  ``api.register_alias(name, native)``;
- per request: ``api.authenticate(request, implied=None) -> Caller``,
  ``await api.read_json(request)``, ``api.resolve_model(name, family=None)``,
  ``async with api.turn(chat, caller) as turn`` (then ``await
  api.relay(writer, turn, renderer)``, ``turn.events()`` or ``await
  turn.collect()``), ``await api.prompt_tokens(chat)``, ``await
  api.count_tokens(text)``, ``api.admit_model(caller, *names)`` and
  ``api.note_usage(...)`` for routes that run no turn, the writers
  ``api.sse(request)`` / ``api.json_array(request)`` /
  ``api.ndjson(request, heartbeat)``, ``api.embeddings(dimensions)``;
- read: ``api.settings`` (its ``plugins.<name>`` object, read-only, always
  current), ``api.models`` (the model catalogue, read-only),
  ``api.default_model``, ``api.responses_ttl_seconds``, ``api.name``.

A plugin never reaches accounts, the upstream client or the config store,
and never parses DeepSeek frames. The names below are the whole contract
(:data:`API_VERSION` names its version); everything else in ``ds2proxy`` is
internal.
"""

from __future__ import annotations

from .context import CatalogueView, PluginContext
from .contract import *  # noqa: F403 - the contract is re-exported whole
from .contract import __all__ as _contract_names
from .loader import GROUP, PluginInfo, discover, load_plugins
from .routing import request_ended, wrap_handler

# The name plugins have always annotated ``register(api)`` with.
PluginAPI = PluginContext

__all__ = [*_contract_names, "CatalogueView", "PluginAPI", "PluginContext"]

