"""The dashboard's form posts. Each runs the same operation as its JSON
route, then redirects back with a message (post / redirect / get), so the
dashboard works with JavaScript off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ..body import is_large
from ..config import ConfigError
from ..config_store import decode_env_json
from ..errors import InvalidRequest, PermissionDenied, ProxyError, RateLimited
from . import settings
from .context import AdminContext, check_depth
from .credentials import Claims, check_new_password
from .dashboard import LOGIN_URL, Dashboard, Form, FormHandler, safe_next
from .form_snapshot import edited
from .pages import Pages
from .probes import DEFAULT_MODEL
from .responses import FieldErrors

ACCOUNTS_URL = "/admin/ui/accounts"
KEYS_URL = "/admin/ui/keys"
SETTINGS_URL = "/admin/ui/settings"
CONFIG_URL = "/admin/ui/config"
CAPTURES_URL = "/admin/ui/captures"
T = TypeVar("T")


def _text(form: Form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def account_from_fields(login: str, password: str, token: str, area_code: str = ""
                        ) -> dict[str, str]:
    """An e-mail (has an @) or a mobile number, with a password and/or a token."""
    item = {"password": password, "token": token}
    if "@" in login:
        item["email"] = login
    elif login:
        item.update(mobile=login, area_code=area_code)
    return {k: v for k, v in item.items() if v}


def _import_lines(keys: str, accounts: str) -> tuple[list[str], list[dict[str, str]]]:
    """The batch import form's key lines and account lines."""
    return [k.strip() for k in keys.splitlines() if k.strip()], parse_account_lines(accounts)


def parse_account_lines(text: str) -> list[dict[str, str]]:
    """Batch lines: ``login:password`` (e-mail or mobile), or a bare token."""
    accounts = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        login, sep, password = line.partition(":")
        if sep and not (login.strip() and password.strip()):
            raise InvalidRequest(f"account line {number}: write login:password or a token")
        accounts.append(account_from_fields(login.strip(), password.strip(), "") if sep
                        else {"token": line})
    return accounts


async def _off_loop_if_large(request: web.Request, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` on a large form's contents, in a worker thread: decoding
    and walking megabytes of it would hold every other request."""
    return await asyncio.to_thread(work, *args) if is_large(request) else work(*args)


def _document(raw: bytes, pasted: str) -> dict[str, Any]:
    """An uploaded file, else pasted config text (JSON or its base64), as a
    checked object."""
    text = raw.decode("utf-8", errors="replace").strip() or pasted.strip()
    if not text:
        raise InvalidRequest("choose a file or paste a config first")
    try:
        document: Any = decode_env_json(text, where="the config")
    except ConfigError as exc:
        raise InvalidRequest(str(exc).removeprefix("config field 'the config': ")
                             .replace("neither JSON", "that is neither JSON")) from None
    if not isinstance(document, dict):
        raise InvalidRequest("a config must be a JSON object")
    check_depth(document)
    return document


class Forms:
    def __init__(self, ctx: AdminContext, dash: Dashboard, pages: Pages) -> None:
        self.ctx = ctx
        self.dash = dash
        self.pages = pages
        self.ops = ctx.ops

    def table(self) -> list[tuple[str, str, FormHandler]]:
        """(path under /admin/ui/, page to return to on error, handler)."""
        return [
            ("logout", LOGIN_URL, self.logout),
            ("accounts/add", ACCOUNTS_URL, self.add_account),
            ("accounts/delete", ACCOUNTS_URL, self.delete_account),
            ("accounts/test", ACCOUNTS_URL, self.test_account),
            ("accounts/test-all", ACCOUNTS_URL, self.test_all),
            ("accounts/import", ACCOUNTS_URL, self.batch_import),
            ("accounts/health", ACCOUNTS_URL, self.account_health),
            ("accounts/proxy", ACCOUNTS_URL, self.account_proxy),
            ("keys/add", KEYS_URL, self.add_key),
            ("keys/delete", KEYS_URL, self.delete_key),
            ("settings", SETTINGS_URL, self.save_settings),
            ("settings/password", SETTINGS_URL, self.change_password),
            ("config/import", CONFIG_URL, self.import_config),
            ("captures/clear", CAPTURES_URL, self.clear_captures),
        ]

    def _back(self, request: web.Request, form: Form, default: str, text: str,
              kind: str = "success") -> web.Response:
        return self.dash.back(request, safe_next(_text(form, "back"), default), kind, text)

    # -- accounts -------------------------------------------------------------------------

    async def add_account(self, request: web.Request, claims: Claims, form: Form
                          ) -> web.StreamResponse:
        item = account_from_fields(_text(form, "login"), _text(form, "password"),
                                   _text(form, "token"), _text(form, "area_code"))
        if _text(form, "proxy"):
            item["proxy"] = _text(form, "proxy")
        identifier, total = await self.ops.add_account(item)
        return self._back(request, form, ACCOUNTS_URL,
                          f"Account {identifier} added ({total} in the pool).")

    async def delete_account(self, request: web.Request, claims: Claims, form: Form
                             ) -> web.StreamResponse:
        identifier = _text(form, "identifier")
        await self.ops.remove_account(identifier)
        return self._back(request, form, ACCOUNTS_URL, f"Account {identifier} removed.")

    async def test_account(self, request: web.Request, claims: Claims, form: Form
                           ) -> web.StreamResponse:
        result = await self.ops.test_account(_text(form, "identifier"), model=DEFAULT_MODEL,
                                             message=_text(form, "message"))
        verdict = "works" if result["success"] else "failed"
        return self._back(request, form, ACCOUNTS_URL,
                          f"{result['account']} {verdict} in {result['response_time']} ms: "
                          f"{result['message']}", "success" if result["success"] else "error")

    async def test_all(self, request: web.Request, claims: Claims, form: Form
                       ) -> web.StreamResponse:
        results = [r async for r in self.ops.test_all(model=DEFAULT_MODEL,
                                                      message=_text(form, "message"))]
        ok = sum(1 for r in results if r["success"])
        kind = "success" if ok == len(results) else "error"
        return self._back(request, form, ACCOUNTS_URL,
                          f"{ok} of {len(results)} accounts passed the test.", kind)

    async def account_health(self, request: web.Request, claims: Claims, form: Form
                             ) -> web.StreamResponse:
        action = _text(form, "action")
        view = self.ops.set_health(_text(form, "identifier"), action)
        return self._back(request, form, ACCOUNTS_URL,
                          f"Account {view['identifier']} is now {view['state'].replace('_', ' ')}.")

    async def account_proxy(self, request: web.Request, claims: Claims, form: Form
                            ) -> web.StreamResponse:
        view = await self.ops.set_proxy(_text(form, "identifier"), _text(form, "proxy"))
        where = view["proxy"] or "no proxy (direct)"
        return self._back(request, form, ACCOUNTS_URL,
                          f"Account {view['identifier']} now goes through {where}.")

    async def batch_import(self, request: web.Request, claims: Claims, form: Form
                           ) -> web.StreamResponse:
        keys, accounts = await _off_loop_if_large(request, _import_lines, _text(form, "keys"),
                                                  _text(form, "accounts"))
        result = await self.ops.batch_import(keys, accounts)
        return self._back(request, form, ACCOUNTS_URL,
                          f"Imported {result['imported_accounts']} new accounts "
                          f"({result['updated_accounts']} updated) and "
                          f"{result['imported_keys']} new keys.")

    # -- keys -------------------------------------------------------------------------------

    async def add_key(self, request: web.Request, claims: Claims, form: Form
                      ) -> web.StreamResponse:
        total = await self.ops.add_key(_text(form, "key"))
        return self._back(request, form, KEYS_URL, f"API key added ({total} configured).")

    async def delete_key(self, request: web.Request, claims: Claims, form: Form
                         ) -> web.StreamResponse:
        total = await self.ops.remove_key(_text(form, "key_id"))
        return self._back(request, form, KEYS_URL, f"API key removed ({total} left).")

    # -- settings ---------------------------------------------------------------------------

    async def save_settings(self, request: web.Request, claims: Claims, form: Form
                            ) -> web.StreamResponse:
        changes, errors = settings.parse_form(form)
        submitted = {p: str(form.get(p, "")) for p in settings.SETTINGS}
        current = settings.flat_values(self.ctx.core.config)
        shown = str(form.get(settings.SHOWN_FIELD, ""))
        changed = {p: v for p, v in edited(changes, shown).items()
                   if p not in errors and v != current.get(p)}
        for param, problem in self.ops.settings_errors(changed).items():
            errors.setdefault(settings.form_field_of(param), problem)
        if not errors:
            try:
                await self.ops.update_settings(changed)
            except FieldErrors as exc:  # changed by someone else meanwhile
                errors.update({settings.form_field_of(p): m for p, m in exc.errors.items()})
        if errors:
            submitted.update({p: p in form for p, s in settings.SETTINGS.items()
                              if s.kind == "bool"})
            return self.pages.settings_page(request, claims, values=submitted, errors=errors,
                                            status=400, shown=shown or None)
        return self.dash.back(request, SETTINGS_URL, "success",
                              "Settings saved and applied.")

    async def change_password(self, request: web.Request, claims: Claims, form: Form
                              ) -> web.StreamResponse:
        """A session left open (a shared or stolen laptop, a page left logged
        in) must not be enough to lock the admin out: the current password
        (or, before one is set, the admin key) is asked for again."""
        new, confirm = str(form.get("new_password", "")), str(form.get("confirm_password", ""))
        current = str(form.get("current_password", ""))
        if not current.strip():
            return self._password_refused(request, claims, 400, "current_password",
                                          "enter the current password (or admin key)")
        if new != confirm:
            return self._password_refused(request, claims, 400, "confirm_password",
                                          "the two passwords differ")
        try:
            check_new_password(new)
            await self.ctx.gate.confirm_current(request, current)
            await self.ctx.ops.change_password(new)
        except (InvalidRequest, PermissionDenied, RateLimited) as exc:
            return self._password_refused(request, claims, exc.status,
                                          exc.param or "current_password", exc.message,
                                          exc.retry_after)
        response = self.dash.back(request, SETTINGS_URL, "success",
                                  "Password changed. Every other admin session is signed out.")
        self.ctx.sessions.start(request, response)
        return response

    def _password_refused(self, request: web.Request, claims: Claims, status: int, field: str,
                          message: str, retry_after: int | None = None) -> web.Response:
        page = self.pages.settings_page(request, claims, status=status,
                                        errors={field: message})
        if retry_after:
            page.headers["Retry-After"] = str(retry_after)
        return page

    # -- config, captures, logout ---------------------------------------------------------------

    async def import_config(self, request: web.Request, claims: Claims, form: Form
                            ) -> web.StreamResponse:
        """Import a file or pasted text; on an error the page comes back with
        the text still in the form and the error's line and column."""
        upload = form.get("file")
        raw = b""
        if isinstance(upload, web.FileField):
            raw = await asyncio.to_thread(upload.file.read)
        pasted = str(form.get("config_text") or "")
        mode = _text(form, "mode") or "merge"
        try:
            document = await _off_loop_if_large(request, _document, raw, pasted)
            result = await self.ops.import_config(document, mode)
        except ProxyError as exc:
            return await self.pages.config_page(request, claims, status=exc.status,
                                                text=pasted, mode=mode, error=exc.message)
        notes = "".join(f" Warning: {w}." for w in result["warnings"][:3])
        return self.dash.back(request, CONFIG_URL, "info" if notes else "success",
                              f"Config imported ({result['mode']}): {result['total_keys']} keys, "
                              f"{result['total_accounts']} accounts.{notes}")

    async def clear_captures(self, request: web.Request, claims: Claims, form: Form
                             ) -> web.StreamResponse:
        self.ctx.captures.clear()
        return self.dash.back(request, CAPTURES_URL, "success", "Captures cleared.")

    async def logout(self, request: web.Request, claims: Claims, form: Form
                     ) -> web.StreamResponse:
        response = self.dash.back(request, LOGIN_URL, "info", "You are logged out.")
        self.ctx.sessions.end(request, response, claims)
        return response
