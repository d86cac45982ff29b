"""The hello dialect against a real ds2proxy and the fake upstream, with the
fixtures of ds2proxy's pytest plugin (``ds2proxy.testing.pytest_plugin``)."""

from __future__ import annotations

import json

from ds2proxy.testing import Scripted


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_ask_answers_with_the_turns_text(ds2proxy_server, ds2proxy_client):
    ds2proxy_server.fake.enqueue(Scripted(thinking="hmm", answer="Forty-two."))
    reply = await ds2proxy_client.post("/hello/v1/ask", {"model": "deepseek-reasoner",
                                                         "question": "Answer?"})
    assert reply.status == 200
    assert reply.json() == {"answer": "Forty-two.", "thinking": "hmm",
                            "model": "deepseek-reasoner"}


async def test_ask_streams_events_and_ends_with_done(ds2proxy_server, ds2proxy_client):
    ds2proxy_server.fake.enqueue(Scripted(answer="streamed"))
    reply = await ds2proxy_client.post("/hello/v1/ask", {"question": "Go", "stream": True})
    events = sse_events(reply.text)
    assert "".join(e["text"] for name, e in events if name == "answer") == "streamed"
    assert events[-1] == ("done", {})


async def test_a_blank_question_is_a_400_in_openai_shape(ds2proxy_server, ds2proxy_client):
    reply = await ds2proxy_client.post("/hello/v1/ask", {"question": " "})
    assert reply.status == 400
    assert reply.json()["error"]["param"] == "question"
    assert ds2proxy_server.fake.calls_to("chat/completion") == []


async def test_its_model_is_listed_and_answers(ds2proxy_server, ds2proxy_client):
    ids = {m["id"] for m in (await ds2proxy_client.get("/v1/models")).json()["data"]}
    assert "hello-1" in ids
    ds2proxy_server.fake.enqueue(Scripted(answer="hi"))
    reply = await ds2proxy_client.post("/hello/v1/ask", {"model": "hello-1", "question": "?"})
    assert reply.json()["model"] == "hello-1" and reply.json()["answer"] == "hi"


async def test_the_system_setting_is_checked_and_applies_without_restart(
        ds2proxy_server, ds2proxy_client):
    bad = await ds2proxy_client.put("/admin/plugins/hello/settings", {"system": 7}, admin=True)
    assert bad.status == 400 and bad.json()["field"] == "plugins.hello.system"
    good = await ds2proxy_client.put("/admin/plugins/hello/settings",
                                     {"system": "Answer in French."}, admin=True)
    assert good.status == 200
    ds2proxy_server.fake.enqueue(Scripted(answer="Oui."))
    await ds2proxy_client.post("/hello/v1/ask", {"question": "Yes?"})
    prompt = ds2proxy_server.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "Answer in French." in prompt and "Yes?" in prompt
