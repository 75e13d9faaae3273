"""An address that comes again is validated once (issue #12, item 1: per-address work repeated for the same
address), through a bounded cache; invalid addresses are refused every time."""

from __future__ import annotations

from typing import Any

import email_validator
import pytest

from mailroom import Mail
from mailroom.domain import addresses
from mailroom.domain.addresses import Address
from mailroom.errors import InvalidAddress


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The addresses email-validator is asked about (the real validator runs)."""
    seen: list[str] = []
    real = email_validator.validate_email

    def counting(email: str, **options: Any) -> Any:
        seen.append(email)
        return real(email, **options)

    # On the library module: the domain imports it when it first validates (keeping CLI start-up light).
    monkeypatch.setattr(email_validator, "validate_email", counting)
    return seen


def test_a_repeated_address_is_validated_once(validations: list[str]) -> None:
    email = "repeated.sender.for.cache@example.org"
    for i in range(3):
        mail = Mail(to=f"user{i}@example.org", sender=f"Shop <{email}>", subject="s", text="t")
        assert mail.sender == Address(email=email, name="Shop")
    assert validations.count(email) == 1


def test_invalid_addresses_are_refused_every_time(validations: list[str]) -> None:
    for _ in range(2):
        with pytest.raises(InvalidAddress, match="@-sign"):
            Address(email="no-at-sign.example.org")
    with pytest.raises(InvalidAddress, match="U\\+000A"):
        Address(email="a@example.org\n")


def test_the_cache_is_bounded() -> None:
    info = addresses.validated_address.cache_info()
    assert info.maxsize is not None and info.maxsize <= 100_000
