"""Key rotation: re-encrypt every stored secret under the first configured key, and find the secrets no
configured key opens.

Rotating a key: put the new key first in MAILROOM_SECRET_KEY (the old one after it) everywhere, restart,
run ``rotate``; once it reports nothing unopened, the old key can go. Workers keep running throughout:
both keys open everything at every moment, and each batch is a short transaction of its own.
"""

from __future__ import annotations

from mailroom.domain.permissions import MANAGE_SERVERS, Subject
from mailroom.domain.stored_secrets import RotationReport, SecretKind, StoredSecret
from mailroom.ports import StoredSecrets

DEFAULT_BATCH_SIZE = 100


class SecretKeyUseCases:
    def __init__(self, *, store: StoredSecrets, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self._store = store
        self._batch_size = batch_size

    def rotate(self, subject: Subject) -> RotationReport:
        """Re-encrypt every secret under the first key, batch by batch; those no key opens are reported and
        left as they are (the rest is rotated all the same)."""
        subject.require(MANAGE_SERVERS)
        report = RotationReport()
        for kind in SecretKind:
            after: str | None = None
            while True:
                batch = self._store.rotate_batch(kind, after=after, limit=self._batch_size)
                if batch.last_id is None:
                    break
                report.rotated[kind] += batch.rotated
                report.current[kind] += batch.current
                report.unopened += batch.unopened
                after = batch.last_id
        return report

    def check(self, subject: Subject) -> list[StoredSecret]:
        """The stored secrets that no configured key opens (where they are, never their value)."""
        subject.require(MANAGE_SERVERS)
        unopened: list[StoredSecret] = []
        for kind in SecretKind:
            after: str | None = None
            while True:
                batch = self._store.check_batch(kind, after=after, limit=self._batch_size)
                if batch.last_id is None:
                    break
                unopened += batch.unopened
                after = batch.last_id
        return unopened
