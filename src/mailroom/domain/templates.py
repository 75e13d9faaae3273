"""Mail templates: sets of named templates per locale, shared partials, declared variables and versions."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from mailroom.domain.addresses import reject_line_breaks
from mailroom.errors import InvalidInput

_SET_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_LOCALE_LENGTH = 35
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
# Names that hold a one-time code or a link carrying one, in any set: a set (or the app) may declare more.
_SECRET_NAME = re.compile(r"(^|_)(code|token|secret|password|confirm_url|reset_url|verify_url|"
                          r"verification_url|activation_url|magic_link|login_link)$")


def is_secret_name(name: str) -> bool:
    """Whether a variable is secret by its name alone (``confirm_url``, ``reset_code``, ``api_token``, ...)."""
    return bool(_SECRET_NAME.search(name.lower()))


class TemplateKind(enum.StrEnum):
    TEMPLATE = "template"  # a mail: subject and body
    PARTIAL = "partial"  # a layout, header or footer that templates extend or include


def normalise_locale(locale: str) -> str:
    """``de_ch`` → ``de-CH``: the BCP 47 spelling, so one locale is stored one way."""
    # 35 characters, as stored; fullmatch because "$" would let a trailing newline through.
    if len(locale) > MAX_LOCALE_LENGTH or not _LOCALE.fullmatch(locale):
        raise InvalidInput(f"locale {locale!r} is not a language tag such as en, de or de-CH", field="locale")
    language, *rest = re.split(r"[-_]", locale)
    parts = [language.lower()]
    for part in rest:
        parts.append(part.upper() if len(part) == 2 else part.title() if len(part) == 4 else part)
    return "-".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateSet:
    id: str
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    default_locale: str = "en"

    def __post_init__(self) -> None:
        if not _SET_ID.match(self.id):
            raise InvalidInput(f"template set id {self.id!r}: use lower-case letters, digits, '.', '_', '-'",
                               field="id")
        if not self.name.strip():
            raise InvalidInput("a template set needs a name", field="name")
        object.__setattr__(self, "default_locale", normalise_locale(self.default_locale))
        object.__setattr__(self, "tags", tuple(self.tags))


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """One template (or partial) in one locale.

    ``variables`` declares the model variables the template uses, each with a sample value for previews.
    ``secret_variables`` names those that carry a code (a reset or confirmation link): they may appear in
    links and text, never where a mail client loads them by itself. It is declared by the set that ships
    the template (``set.toml``), not edited at run time, so an editor cannot switch the protection off.
    """

    set_id: str
    name: str
    locale: str
    kind: TemplateKind = TemplateKind.TEMPLATE
    subject: str = ""
    html: str | None = None
    text: str | None = None
    description: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    secret_variables: frozenset[str] = frozenset()
    version: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidInput(f"template name {self.name!r}: use lower-case letters, digits, '_' and '-'",
                               field="name")
        object.__setattr__(self, "locale", normalise_locale(self.locale))
        object.__setattr__(self, "kind", TemplateKind(self.kind))
        reject_line_breaks("template subject", self.subject.strip("\r\n"))
        object.__setattr__(self, "subject", self.subject.strip("\r\n"))
        if self.html is None and self.text is None:
            raise InvalidInput(f"template {self.name!r} needs an HTML or a text body", field="html")
        if self.kind is TemplateKind.TEMPLATE and not self.subject.strip():
            raise InvalidInput(f"template {self.name!r} needs a subject", field="subject")
        for variable in self.variables:
            if not variable.isidentifier():
                raise InvalidInput(f"variable {variable!r} is not a name a template can use", field="variables")
        object.__setattr__(self, "variables", dict(self.variables))
        object.__setattr__(self, "secret_variables", frozenset(self.secret_variables))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.set_id, self.name, self.locale)

    @property
    def qualified_name(self) -> str:
        return f"{self.set_id}/{self.name}.{self.locale}"

    def same_content(self, other: Template) -> bool:
        return (self.subject, self.html, self.text, dict(self.variables), self.description) == (
            other.subject, other.html, other.text, dict(other.variables), other.description)


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateVersion:
    """A saved state of a template; every save keeps the one before."""

    version: int
    subject: str
    html: str | None
    text: str | None
    variables: Mapping[str, str]
    saved_at: datetime
    saved_by: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedTemplate:
    subject: str
    html: str | None
    text: str
    locale: str
    template: str  # "set_id/name"


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretExposure:
    """A secret variable found where a mail client loads it by itself: ``where`` is e.g. ``<img src>``."""

    variable: str
    where: str
    part: str  # the template part or partial: "html", "layout.html", ...
    line: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingTranslation:
    set_id: str
    name: str
    locale: str
