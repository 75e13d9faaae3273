"""A discard-everything SMTP server for benchmarks, run in its own process: python bench/sink.py PORT.

With ``--record FILE`` it appends each message's Message-ID line to FILE (flushed per message), so that a
benchmark can count duplicates and losses when Postfix's smtp-sink (whose ``-D`` dump does the same) is
not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any, BinaryIO

from aiosmtpd.controller import Controller

MESSAGE_ID_LINE = re.compile(rb"^message-id:[^\r\n]*", re.IGNORECASE | re.MULTILINE)


class Discard:
    def __init__(self, record: BinaryIO | None = None) -> None:
        self.record = record

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.record is not None:
            headers = envelope.content.split(b"\r\n\r\n", 1)[0]
            match = MESSAGE_ID_LINE.search(headers)
            self.record.write((match.group(0) if match else b"Message-ID: (none)") + b"\n")
            self.record.flush()
        return "250 OK"


async def main(port: int, record: BinaryIO | None) -> None:
    controller = Controller(Discard(record), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("--record", default=None, help="append each message's Message-ID line to this file")
    args = parser.parse_args()
    record_file = open(args.record, "ab") if args.record else None  # noqa: SIM115 - open for the process's life
    asyncio.run(main(args.port, record_file))
