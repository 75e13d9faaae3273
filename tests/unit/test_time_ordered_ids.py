"""Mail ids sort by queue time below the millisecond too: a claim orders a batch by id, and an enqueue
now takes well under a millisecond, so a bulk puts many mails into one (issue #12, item 1)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from mailroom.domain.outbox import time_ordered_id

START = datetime(2026, 11, 29, 20, 0, 0, 123000, tzinfo=UTC)


def test_ids_within_one_millisecond_sort_by_time() -> None:
    moments = [START + timedelta(microseconds=step) for step in range(0, 1000, 7)]
    for _ in range(20):  # the random bits must never decide the order
        ids = [time_ordered_id(moment) for moment in moments]
        assert ids == sorted(ids)


def test_ids_are_uuid7() -> None:
    value = uuid.UUID(time_ordered_id(START))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == int(START.timestamp() * 1000)


def test_a_millisecond_boundary_keeps_the_order() -> None:
    # 0.124 s is not exact in binary: a float timestamp puts it in the millisecond before, fraction 0.
    before, boundary = START + timedelta(microseconds=999), START + timedelta(microseconds=1000)
    assert time_ordered_id(before) < time_ordered_id(boundary)
