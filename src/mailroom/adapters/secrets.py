"""SMTP passwords and confidential mail contents encrypted at rest with Fernet (AES-128-CBC +
HMAC-SHA256), with key rotation."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from mailroom.errors import ConfigurationError, SecretError


class FernetSecretBox:
    """Encrypts with the first key, decrypts with any: prepend a new key to rotate."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError("at least one secret key is needed")
        self._first_key = keys[0]
        try:
            self._current = Fernet(keys[0])
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "MAILROOM_SECRET_KEY must be one or more comma-separated Fernet keys "
                "(32 url-safe base64-encoded bytes; make one with `mailroom keygen`)"
            ) from exc

    @classmethod
    def from_settings(cls, secret_key: str | None, key_file: str | Path) -> FernetSecretBox:
        """Keys from the setting, else from the key file, which is created (mode 0600) when missing."""
        if secret_key:
            return cls([k.strip().encode() for k in secret_key.split(",") if k.strip()])
        path = Path(key_file)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting at once must not write two different keys.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(Fernet.generate_key() + b"\n")
        _refuse_shared_key_file(path)
        keys = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
        return cls(keys)

    def derive_key(self, purpose: str) -> bytes:
        """A key for another use (e.g. signing web sessions), so one secret configures everything and
        knowing the derived key reveals nothing about the encryption key."""
        return hmac.new(self._first_key, f"mailroom:{purpose}".encode(), hashlib.sha256).digest()

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise SecretError(
                "a stored SMTP password cannot be decrypted with the configured key(s): was "
                "MAILROOM_SECRET_KEY or the key file changed? Add the old key after the new one, "
                "or enter the password again"
            ) from exc

    def seal(self, content: bytes) -> bytes:
        """Encrypt a confidential mail's message for storage."""
        return self._fernet.encrypt(content)

    def open(self, sealed: bytes) -> bytes:
        """The message sealed by :meth:`seal` with any configured key."""
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken as exc:
            raise SecretError(
                "the content of a confidential mail cannot be decrypted with the configured key(s): was "
                "MAILROOM_SECRET_KEY or the key file changed? Add the old key after the new one"
            ) from exc

    def rotate(self, token: bytes) -> bytes | None:
        """The token under the first key, or None when it already is (nothing to rewrite); raises SecretError
        when no configured key opens it."""
        try:
            self._current.decrypt(token)
        except InvalidToken:
            pass
        else:
            return None
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise SecretError("a stored secret cannot be decrypted with any configured key: add the key it was "
                              "sealed with to MAILROOM_SECRET_KEY (after the first), or enter it again") from exc

    def can_open(self, token: bytes) -> bool:
        try:
            self._fernet.decrypt(token)
        except InvalidToken:
            return False
        return True


def _refuse_shared_key_file(path: Path) -> None:
    """Whoever reads the key reads every SMTP password and confidential mail: it is its owner's alone."""
    if os.name == "nt":  # no POSIX modes; the file's ACL decides
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o066:
        raise ConfigurationError(
            f"the key file {path} can be read or written by group or others (mode {mode:04o}): "
            f"run `chmod 600 {path}`, and make a new key if others may have read it"
        )


def generate_key() -> str:
    return Fernet.generate_key().decode()
