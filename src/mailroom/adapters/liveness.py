"""The worker's liveness file: touched on a timer from the worker's event loop, checked by its age.

A supervisor that cannot see inside the process (a container HEALTHCHECK, a systemd timer) asks
``mailroom worker --check-alive``, which compares the file's modification time with now. The touch runs
on the worker's own event loop, so a fresh file means the process runs and its loop is not stuck (a
blocking call or a deadlock stops the touching). A worker waiting for its database is alive: it keeps
touching, since a restart would not bring the database back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from mailroom.errors import ConfigurationError

log = logging.getLogger(__name__)


class LivenessFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._failing = False

    def start(self) -> None:
        """The first touch: a path that cannot be written is a setting to fix, said at once."""
        try:
            self._touch()
        except OSError as exc:
            raise ConfigurationError(f"MAILROOM_WORKER_LIVENESS_FILE: cannot write {self.path}: "
                                     f"{exc.strerror or exc}; choose a writable path",
                                     field="worker_liveness_file") from None

    def touch(self) -> None:
        """Mark the worker alive now; a failure is logged (once until it works again), never raised."""
        try:
            self._touch()
        except OSError as exc:
            if not self._failing:
                log.warning("cannot touch the liveness file %s (health checks will report the worker dead): %s",
                            self.path, exc)
            self._failing = True
        else:
            self._failing = False

    async def keep_touching(self, interval_seconds: float) -> None:
        """Touch every ``interval_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(interval_seconds)
            self.touch()

    def remove(self) -> None:
        """A stopped worker is not alive: the check fails at once instead of after the file grows old."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the liveness file %s: %s", self.path, exc)

    def age_seconds(self) -> float | None:
        """Seconds since the last touch; None when there is no file."""
        try:
            return max(0.0, time.time() - self.path.stat().st_mtime)
        except FileNotFoundError:
            return None

    def _touch(self) -> None:
        self.path.touch()  # creates the file, or sets its modification time to now


@contextlib.asynccontextmanager
async def kept_alive(path: str | None, interval_seconds: float) -> AsyncIterator[LivenessFile | None]:
    """Touch the file at ``path`` now and every ``interval_seconds`` while the block runs on this event loop,
    and remove it when the block ends; with no path, nothing."""
    if not path:
        yield None
        return
    liveness = LivenessFile(path)
    liveness.start()
    touching = asyncio.create_task(liveness.keep_touching(interval_seconds), name="mailroom-liveness")
    try:
        yield liveness
    finally:
        touching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await touching
        liveness.remove()
