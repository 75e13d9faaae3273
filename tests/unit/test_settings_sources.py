"""Settings are parsed and validated the same way from keyword arguments, the environment and the TOML file,
and an error names the setting and where it came from (issue #11, item 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailroom.errors import ConfigurationError
from mailroom.settings import Settings


def toml(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "mailroom.toml"
    path.write_text(text, encoding="utf-8")
    return {"MAILROOM_CONFIG": str(path)}


@pytest.mark.parametrize("table", ["", "[mailroom]\n"])
def test_toml_values_are_typed_like_environment_values(tmp_path: Path, table: str) -> None:
    settings = Settings.load(toml(tmp_path, table + 'self_registration = "false"\n'
                                                    'staging_allowed_domains = "example.org, example.net"\n'
                                                    'max_attempts = "3"\nlease_seconds = 90\n'))
    assert settings.self_registration is False
    assert settings.staging_allowed_domains == ("example.org", "example.net")
    assert settings.max_attempts == 3 and settings.lease_seconds == 90.0


def test_keyword_arguments_are_typed_too() -> None:
    settings = Settings.load({}, self_registration="false", staging_allowed_domains="example.org",
                             web_port="8080")
    assert settings.self_registration is False
    assert settings.staging_allowed_domains == ("example.org",)
    assert settings.web_port == 8080


def test_the_environment_keeps_comma_separated_lists_and_words_for_booleans() -> None:
    settings = Settings.load({"MAILROOM_STAGING_ALLOWED_DOMAINS": "a.example, b.example",
                              "MAILROOM_SELF_REGISTRATION": "yes", "MAILROOM_WEB_PORT": "",
                              "MAILROOM_UNRELATED_THING": "ignored"})
    assert settings.staging_allowed_domains == ("a.example", "b.example")
    assert settings.self_registration is True and settings.web_port == 8025


def test_precedence_is_keywords_then_environment_then_toml_then_defaults(tmp_path: Path) -> None:
    env = toml(tmp_path, "[mailroom]\nmax_attempts = 3\nlease_seconds = 10\nretry_factor = 3.0\n")
    env |= {"MAILROOM_MAX_ATTEMPTS": "4", "MAILROOM_LEASE_SECONDS": "20"}
    settings = Settings.load(env, max_attempts=5)
    assert (settings.max_attempts, settings.lease_seconds, settings.retry_factor) == (5, 20.0, 3.0)
    assert settings.keep_sent_days == 30.0


@pytest.mark.parametrize(("source", "needle"), [
    ("toml", "mailroom.toml"), ("environment", "MAILROOM_SELF_REGISTRATION"), ("keywords", "keyword"),
])
def test_an_invalid_value_names_the_setting_and_its_source(tmp_path: Path, source: str, needle: str) -> None:
    env: dict[str, str] = {}
    keywords: dict[str, Any] = {}
    if source == "toml":
        env = toml(tmp_path, 'self_registration = "perhaps"\n')
    elif source == "environment":
        env = {"MAILROOM_SELF_REGISTRATION": "perhaps"}
    else:
        keywords = {"self_registration": "perhaps"}
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(env, **keywords)
    assert "self_registration" in str(caught.value).lower()
    assert needle in str(caught.value)
    assert caught.value.field == "self_registration"


@pytest.mark.parametrize(("name", "value"), [
    ("worker_batch_size", 0), ("lease_seconds", "inf"), ("poll_interval_seconds", "nan"),
    ("max_attempts", "3.5"), ("web_port", 70000), ("staging_allowed_domains", 5),
])
def test_impossible_values_are_refused(name: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load({}, **{name: value})
    assert caught.value.field == name


def test_unknown_settings_are_refused_naming_the_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"mailroom\.toml.*selfregistration"):
        Settings.load(toml(tmp_path, "selfregistration = true\n"))
    with pytest.raises(ConfigurationError, match="keyword"):
        Settings.load({}, selfregistration=True)


def test_replace_validates_as_well() -> None:
    settings = Settings.load({})
    assert settings.replace(self_registration="true").self_registration is True
    with pytest.raises(ConfigurationError):
        settings.replace(max_attempts=0)
    with pytest.raises(ConfigurationError):
        settings.replace(retry_jitter=5.0)  # the retry policy refuses it, named


def test_a_bad_staging_address_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load({}, staging_redirect_to="not an address")
    assert caught.value.field == "staging_redirect_to"
