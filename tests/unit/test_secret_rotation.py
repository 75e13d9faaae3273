"""The key-rotation use case on an in-memory store: it walks every kind batch by batch until a batch comes
back empty, adds up what each batch did, and needs the permission to manage SMTP servers."""

from __future__ import annotations

import pytest

from mailroom import SYSTEM, Subject
from mailroom.domain.stored_secrets import SecretBatch, SecretKind, StoredSecret
from mailroom.errors import PermissionDenied
from mailroom.usecases.secret_keys import SecretKeyUseCases


class MemorySecrets:
    """Secrets as (id, state): "old" rotates, "new" is current, "lost" opens with no key."""

    def __init__(self, secrets: dict[SecretKind, dict[str, str]]) -> None:
        self.secrets = secrets
        self.batches: list[tuple[SecretKind, str | None]] = []

    def _batch(self, kind: SecretKind, after: str | None, limit: int, rewrite: bool) -> SecretBatch:
        self.batches.append((kind, after))
        ids = sorted(i for i in self.secrets[kind] if after is None or i > after)[:limit]
        if not ids:
            return SecretBatch(last_id=None)
        states = [self.secrets[kind][i] for i in ids]
        if rewrite:
            self.secrets[kind].update({i: "new" for i in ids if self.secrets[kind][i] == "old"})
        return SecretBatch(last_id=ids[-1], rotated=states.count("old") if rewrite else 0,
                           current=states.count("new"),
                           unopened=[StoredSecret(kind, i, f"owner {i}") for i, s in zip(ids, states) if s == "lost"])

    def rotate_batch(self, kind: SecretKind, *, after: str | None, limit: int) -> SecretBatch:
        return self._batch(kind, after, limit, rewrite=True)

    def check_batch(self, kind: SecretKind, *, after: str | None, limit: int) -> SecretBatch:
        return self._batch(kind, after, limit, rewrite=False)


def test_rotation_walks_every_batch_and_adds_up() -> None:
    store = MemorySecrets({SecretKind.SMTP_PASSWORD: {"a": "old", "b": "new", "c": "lost"},
                           SecretKind.MAIL_CONTENT: {f"m{n}": "old" for n in range(5)}})
    report = SecretKeyUseCases(store=store, batch_size=2).rotate(SYSTEM)
    assert report.rotated == {SecretKind.SMTP_PASSWORD: 1, SecretKind.MAIL_CONTENT: 5}
    assert report.current == {SecretKind.SMTP_PASSWORD: 1, SecretKind.MAIL_CONTENT: 0}
    assert [s.id for s in report.unopened] == ["c"]
    assert store.batches == [(SecretKind.SMTP_PASSWORD, None), (SecretKind.SMTP_PASSWORD, "b"),
                             (SecretKind.SMTP_PASSWORD, "c"), (SecretKind.MAIL_CONTENT, None),
                             (SecretKind.MAIL_CONTENT, "m1"), (SecretKind.MAIL_CONTENT, "m3"),
                             (SecretKind.MAIL_CONTENT, "m4")]
    assert [s.id for s in SecretKeyUseCases(store=store).check(SYSTEM)] == ["c"]


def test_rotation_needs_the_server_permission() -> None:
    use_cases = SecretKeyUseCases(store=MemorySecrets({k: {} for k in SecretKind}))
    for action in (use_cases.rotate, use_cases.check):
        with pytest.raises(PermissionDenied):
            action(Subject.user("eve", []))
