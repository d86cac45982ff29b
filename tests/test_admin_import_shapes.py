"""What an import body may look like: a bare config, ``{"config", "mode"}``,
or an export's reply sent back as it came. A body naming ``config`` is a
wrapper (no config has such a field): read as a bare config, a wrapper whose
config came as text, or an export reply, was merged as junk fields with a
200, so a restore that restored nothing looked like it had worked."""

from __future__ import annotations

import base64
import json

import pytest

from admin_util import Admin, admin  # noqa: F401  (fixture)


async def test_an_export_sent_back_as_it_came_restores_the_config(admin: Admin):
    exported = await admin.ok("GET", "/admin/config/export")
    await admin.ok("POST", "/admin/keys", json={"name": "added after the backup"})
    assert len(admin.proxy.core.config.key_secrets) == 2
    reply = await admin.ok("POST", "/admin/config/import?mode=replace", json=exported)
    assert reply["warnings"] == [] and reply["total_keys"] == 1
    stored = admin.proxy.store.snapshot()
    assert not {"config", "json", "base64", "mode"} & set(stored)
    assert stored["keys"] == exported["config"]["keys"]


@pytest.mark.parametrize("config", [
    None, "{}", 42, ["keys"],
    pytest.param("BASE64", id="the export's base64 as the config"),
])
async def test_a_wrapper_whose_config_is_not_an_object_is_a_400(admin: Admin, config):
    before = admin.proxy.store.snapshot()
    if config == "BASE64":
        config = base64.b64encode(json.dumps({"keys": ["restored-key-1"]}).encode()).decode()
    reply = await admin.call("POST", "/admin/config/import",
                             json={"config": config, "mode": "replace"})
    assert reply.status == 400, reply.raw
    assert reply.json()["field"] == "config"
    assert admin.proxy.store.snapshot() == before


async def test_something_else_beside_the_config_is_a_400_naming_it(admin: Admin):
    before = admin.proxy.store.snapshot()
    reply = await admin.call("POST", "/admin/config/import",
                             json={"config": {"keys": ["k-123456"]}, "mod": "replace"})
    assert reply.status == 400 and reply.json()["field"] == "mod"
    assert admin.proxy.store.snapshot() == before
    # The wrapper's own mode still works, and a bare config still imports.
    await admin.ok("POST", "/admin/config/import",
                   json={"config": {"keys": ["k-123456"]}, "mode": "replace"})
    assert admin.proxy.core.config.key_secrets == ("k-123456",)
    await admin.ok("POST", "/admin/config/import", json={"keys": ["k-654321"]})
    assert set(admin.proxy.core.config.key_secrets) == {"k-123456", "k-654321"}
