"""Figures of the fault and chaos tests for the reliability report (``make reliability`` → docs/reliability.md).

A test calls :func:`record` with what it injected and what came out; with ``MAILROOM_RELIABILITY_OUT`` set
(bench/reliability.py sets it) each call appends one JSON line there, otherwise it does nothing.
"""

from __future__ import annotations

import json
import os
from typing import Any


def record(scenario: str, *, faults: str, mails: int, sent: int, lost: int, duplicates: int,
           duplicate_bound: int | None = None, kills: int = 0, max_attempts: int = 0, **extra: Any) -> None:
    path = os.environ.get("MAILROOM_RELIABILITY_OUT")
    if not path:
        return
    line = {"scenario": scenario, "faults": faults, "mails": mails, "sent": sent, "lost": lost,
            "duplicates": duplicates, "duplicate_bound": duplicate_bound, "kills": kills,
            "max_attempts": max_attempts, **extra}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
