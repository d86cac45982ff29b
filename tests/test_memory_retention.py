"""What a finished request leaves behind: nothing of its own record, even
where asyncio kept a copy of its context (a pooled upstream connection's
socket reader does), and start-up objects are out of the collector's way."""

from __future__ import annotations

import asyncio
import contextvars
import gc

from ds2proxy import heap, request_record
from ds2proxy.request_record import RequestRecord


def test_a_context_copied_during_a_request_does_not_keep_its_record() -> None:
    record = RequestRecord(request_id="req_1", family="openai", route="/v1/chat/completions")
    token = request_record.enter(record)
    copied = contextvars.copy_context()  # what call_soon / add_reader keep
    assert copied.run(request_record.current) is record
    request_record.leave(token)
    assert request_record.current() is None
    assert copied.run(request_record.current) is None
    assert not any(referent is record for value in copied.values()
                   for referent in gc.get_referents(value))


async def test_tasks_started_in_a_request_see_its_record_while_it_runs() -> None:
    record = RequestRecord(request_id="req_2", family="openai", route="/v1/chat/completions")
    token = request_record.enter(record)
    try:
        async def probe() -> RequestRecord | None:
            await asyncio.sleep(0)
            return request_record.current()

        assert await asyncio.create_task(probe()) is record
    finally:
        request_record.leave(token)


def test_freezing_start_up_keeps_the_objects_alive_and_out_of_collections() -> None:
    survivor = {"built": "at start-up"}
    before = gc.get_freeze_count()
    try:
        heap.freeze_startup()
        assert gc.get_freeze_count() > before
        assert all(o is not survivor for o in gc.get_objects())  # frozen: not scanned
        assert survivor["built"] == "at start-up"
    finally:
        gc.unfreeze()
