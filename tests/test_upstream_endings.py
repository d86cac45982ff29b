"""Odd ways an upstream answer ends, seen from a client on a real port:
each is either the whole answer or an error in the family's shape, never a
cut answer passed off as a finished one; the lease always comes back."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from conftest import Proxy

from ds2proxy.testing import Replay
from ds2proxy.testing.clients import openai_client

USER = [{"role": "user", "content": "hello"}]
READY = 'event: ready\ndata: {"request_message_id":1,"response_message_id":2}\n\n'
CLOSE = 'event: close\ndata: {"click_behavior":"none","auto_resume":false}\n\n'


def recording(tmp_path: Path, *events: str, name: str = "answer") -> Replay:
    path = tmp_path / f"{name}.sse"
    path.write_text(READY + "".join(events) + CLOSE, encoding="utf-8")
    return Replay(path)


def envelope(kind: str, text: str) -> str:
    return ('data: {"v":{"response":{"message_id":2,"status":"WIP","fragments":'
            f'[{{"id":2,"type":"{kind}","content":"{text}"}}]}}}}}}\n\n')


HINT = ('event: hint\ndata: {"type":"error","content":"Too many requests","clear_response":true,'
        '"finish_reason":"rate_limit_reached"}\n\n')


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_a_refusal_hint_after_answer_text_is_an_error_not_a_finished_answer(
        proxy: Proxy, tmp_path: Path, stream: bool):
    """``hint`` (clear_response) after "Hello" went out, then the stream
    closes without a status: the answer was cut, not finished. It used to
    reach the client as "Hello" with finish_reason "stop"."""
    proxy.fake.enqueue(recording(tmp_path, envelope("RESPONSE", "Hel"), 'data: {"v":"lo"}\n\n',
                                 HINT))
    client = openai_client(proxy)
    if stream:
        chunks = await client.chat.completions.create(model="deepseek-chat", messages=USER,
                                                      stream=True)
        text = []
        with pytest.raises(openai.APIError, match="rate_limit_reached"):
            async for chunk in chunks:
                text += [c.delta.content or "" for c in chunk.choices]
                assert all(c.finish_reason is None for c in chunk.choices)
        assert "".join(text) == "Hello"
    else:
        with pytest.raises(openai.APIStatusError, match="rate_limit_reached") as caught:
            await client.chat.completions.create(model="deepseek-chat", messages=USER)
        assert caught.value.status_code == 502
    assert proxy.core.pool.inflight == 0


async def test_a_refusal_hint_after_reasoning_only_is_still_asked_again(proxy: Proxy,
                                                                        tmp_path: Path):
    """Reasoning but no answer yet: the round is void and the same session
    is asked again (spec §12), as for a hint right after ``ready``."""
    proxy.fake.enqueue(recording(tmp_path, envelope("THINK", "hmm"), HINT))
    proxy.fake.enqueue(recording(tmp_path, envelope("RESPONSE", "Hi"),
                                 'data: {"p":"response/status","o":"SET","v":"FINISHED"}\n\n',
                                 name="again"))
    reply = await openai_client(proxy).chat.completions.create(model="deepseek-reasoner",
                                                               messages=USER)
    assert reply.choices[0].message.content == "Hi"
    assert reply.choices[0].finish_reason == "stop"
    assert len(proxy.fake.calls_to("chat/completion")) == 2
    assert proxy.core.pool.inflight == 0


async def test_an_informational_hint_after_answer_text_leaves_the_answer_whole(
        proxy: Proxy, tmp_path: Path):
    """Only a refusal (type "error" or clear_response) cuts an answer."""
    info = 'event: hint\ndata: {"type":"info","content":"Searching is off"}\n\n'
    proxy.fake.enqueue(recording(tmp_path, envelope("RESPONSE", "Hel"), info,
                                 'data: {"v":"lo"}\n\n',
                                 'data: {"p":"response/status","o":"SET","v":"FINISHED"}\n\n'))
    reply = await openai_client(proxy).chat.completions.create(model="deepseek-chat",
                                                               messages=USER)
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("Hello", "stop")


@pytest.mark.parametrize("path", ["response/fragments/" + "9" * 5000 + "/content",
                                  "response/fragments/-" + "9" * 5000,
                                  "response/fragments/" + "٣" + "/content"])
async def test_a_patch_whose_index_is_no_machine_integer_is_skipped(proxy: Proxy, tmp_path: Path,
                                                                    path: str):
    """A 5000-digit index made int() raise ValueError (Python's digit limit),
    which escaped the parser: the client got an internal error instead of
    the answer with the bad frame skipped (spec §9: log and skip)."""
    import json
    frame = "data: " + json.dumps({"p": path, "o": "APPEND", "v": "x"}) + "\n\n"
    proxy.fake.enqueue(recording(tmp_path, envelope("RESPONSE", "Hel"), frame,
                                 'data: {"p":"response/fragments/-1/content","v":"lo"}\n\n',
                                 'data: {"p":"response/status","o":"SET","v":"FINISHED"}\n\n'))
    reply = await openai_client(proxy).chat.completions.create(model="deepseek-chat",
                                                               messages=USER)
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("Hello", "stop")
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("style", ["markdown", "strip"])
async def test_a_marker_with_thousands_of_digits_in_one_chunk_stays_text(
        proxy_factory, tmp_path: Path, style: str):
    """A continue snapshot's new text comes as one chunk: a reference marker
    of 5000 digits in it made the citation rewriter's int() raise, and the
    turn failed with an internal error. Such a "marker" is left as text."""
    proxy = await proxy_factory({"search": {"citation_style": style}})
    marker = "[reference:" + "9" * 5000 + "]"
    incomplete = 'data: {"p":"response/status","o":"SET","v":"INCOMPLETE"}\n\n'
    first = recording(tmp_path, envelope("RESPONSE", "see "), incomplete, name="one")
    second = recording(tmp_path, envelope("RESPONSE", "see " + marker + " ok"),
                       'data: {"p":"response/status","o":"SET","v":"FINISHED"}\n\n', name="two")
    rounds = tmp_path / "rounds.sse"
    rounds.write_bytes(Path(first.path).read_bytes() + Path(second.path).read_bytes())
    proxy.fake.enqueue(Replay(rounds))
    reply = await openai_client(proxy).chat.completions.create(model="deepseek-chat-search",
                                                               messages=USER)
    assert reply.choices[0].message.content == "see " + marker + " ok"
    assert reply.choices[0].finish_reason == "stop"
