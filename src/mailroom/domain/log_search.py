"""The mail log's search box: plain words plus a small filter syntax, parsed into a :class:`LogQuery`.

::

    invoice to:ann@example.org -status:sent subject:"two words" after:2024-05-01 before:2024-06-01T12:00

- A plain word, or a "quoted phrase", must occur in the subject or in a recipient.
- ``to:``, ``from:``, ``subject:`` and ``server:`` match a part of the recipients, the sender, the subject
  or the server name; ``tag:`` matches one whole tag. ``to:`` with a whole address (``to:ann@example.org``)
  means that recipient, and with a whole domain (``to:@example.org``) anyone at exactly that domain (any case):
  found from an index, they leave out ``joann@example.org`` and ``@example.org.uk``.
- ``status:`` takes a status (``status:failed,deferred`` takes several); several ``status:`` filters
  combine with OR, since a mail has one status. Everything else combines with AND.
- ``after:`` and ``before:`` take a date (``YYYY-MM-DD``, meaning its midnight) or an ISO date-time, in
  UTC unless it names its offset. ``after:`` includes that moment, ``before:`` excludes it, so
  ``after:2024-05-01 before:2024-05-02`` is the whole first of May.
- A leading ``-`` negates a word or a filter: ``-newsletter``, ``-status:sent``.

Text with a colon that is not a filter (``Re: invoice``) goes in quotes.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, tzinfo

from mailroom.domain.log import LogQuery, SearchTerm, TermField
from mailroom.domain.outbox import MailStatus
from mailroom.errors import InvalidInput, Text

MAX_SEARCH_LENGTH = 1000
MAX_TERMS = 20

_TEXT_FILTERS = {"to": TermField.RECIPIENT, "from": TermField.SENDER, "subject": TermField.SUBJECT,
                 "server": TermField.SERVER, "tag": TermField.TAG}
_FILTERS = (*_TEXT_FILTERS, "status", "before", "after")
_EXAMPLES = {"to": "to:ann@example.org", "from": "from:shop@example.org", "subject": 'subject:"two words"',
             "server": "server:relay", "tag": "tag:billing", "status": "status:failed",
             "before": "before:2024-05-01", "after": "after:2024-05-01T14:30"}
_KEY = re.compile(r"([A-Za-z]+):")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class _Token:
    key: str | None  # lower-cased filter name, None for a plain word
    value: str
    negated: bool
    source: str  # as typed, for error messages


@dataclass
class _Parsed:
    statuses: set[MailStatus] = field(default_factory=set)
    excluded_statuses: set[MailStatus] = field(default_factory=set)
    terms: list[SearchTerm] = field(default_factory=list)
    after: list[datetime] = field(default_factory=list)
    before: list[datetime] = field(default_factory=list)


def parse_search(text: str, base: LogQuery | None = None, *, timezone: tzinfo = UTC) -> LogQuery:
    """``base`` (default: an empty query) narrowed by the search ``text``; raises InvalidInput (field
    ``q``) naming the part that cannot be read."""
    base = base or LogQuery()
    if len(text) > MAX_SEARCH_LENGTH:
        raise InvalidInput("the search is longer than {limit} characters", {"limit": MAX_SEARCH_LENGTH}, field="q")
    tokens = _tokens(text)
    if len(tokens) > MAX_TERMS:
        raise InvalidInput("the search has {parts} parts; use at most {limit}",
                           {"parts": len(tokens), "limit": MAX_TERMS}, field="q")
    parsed = _Parsed()
    for token in tokens:
        _apply(token, parsed, timezone)

    statuses = frozenset(parsed.statuses)
    excluded = base.excluded_statuses | parsed.excluded_statuses
    if base.statuses and statuses:
        statuses = base.statuses & statuses
        if not statuses:
            # Both ask for statuses and none is in both: no mail can match, and an empty set means "any".
            excluded = frozenset(MailStatus)
    else:
        statuses = base.statuses | statuses
    after = [moment for moment in (base.queued_after, *parsed.after) if moment is not None]
    before = [moment for moment in (base.queued_before, *parsed.before) if moment is not None]
    return replace(base, statuses=statuses, excluded_statuses=excluded, terms=(*base.terms, *parsed.terms),
                   queued_after=max(after, default=None), queued_before=min(before, default=None))


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, end = 0, len(text)
    while position < end:
        if text[position].isspace():
            position += 1
            continue
        start = position
        negated = text[position] == "-" and position + 1 < end and not text[position + 1].isspace()
        if negated:
            position += 1
        key = None
        if matched := _KEY.match(text, position):
            key = matched.group(1).lower()
            position = matched.end()
        if position < end and text[position] == '"':
            closing = text.find('"', position + 1)
            if closing < 0:
                raise InvalidInput("the quote in {rest!r} is not closed: add a closing \"", {"rest": text[start:]},
                                   field="q")
            value = text[position + 1:closing]
            position = closing + 1
        else:
            stop = position
            while stop < end and not text[stop].isspace():
                stop += 1
            value, position = text[position:stop], stop
        tokens.append(_Token(key=key, value=value.strip(), negated=negated, source=text[start:position]))
    return tokens


def _apply(token: _Token, parsed: _Parsed, timezone: tzinfo) -> None:
    if token.key is not None and token.key not in _FILTERS:
        raise InvalidInput(
            "unknown filter '{key}:' in {source!r}; the filters are {filters}. Put text with a colon in quotes: "
            "\"{source}\"", {"key": token.key, "source": token.source,
                              "filters": ", ".join(f + ":" for f in _FILTERS)}, field="q")
    if not token.value:
        if token.key is None:
            return  # "" or a lone quote pair: nothing to look for
        raise InvalidInput("'{key}:' needs a value, e.g. {example}",
                           {"key": token.key, "example": _EXAMPLES[token.key]}, field="q")
    if token.key is None:
        parsed.terms.append(SearchTerm(TermField.TEXT, token.value.lower(), token.negated))
    elif token.key in _TEXT_FILTERS:
        parsed.terms.append(SearchTerm(_TEXT_FILTERS[token.key], token.value.lower(), token.negated))
    elif token.key == "status":
        target = parsed.excluded_statuses if token.negated else parsed.statuses
        target.update(_status(name) for name in token.value.split(","))
    else:
        moment = _moment(token.key, token.value, timezone)
        # "not before X" is "from X on" and "not after X" is "before X": the bounds are complementary.
        is_after = (token.key == "after") != token.negated
        (parsed.after if is_after else parsed.before).append(moment)


def _status(name: str) -> MailStatus:
    wanted = name.strip().lower()
    try:
        return MailStatus(wanted)
    except ValueError:
        known = [s.value for s in MailStatus]
        close = difflib.get_close_matches(wanted, known, n=1)
        hint = Text(" (did you mean '{close}'?)", {"close": close[0]}) if close else ""
        raise InvalidInput("unknown status '{name}'{hint}; the statuses are {known}",
                           {"name": name.strip(), "hint": hint, "known": ", ".join(known)}, field="q") from None


def _moment(key: str, value: str, timezone: tzinfo) -> datetime:
    try:
        if _DAY.fullmatch(value):
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=timezone)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("{key}: '{value}' is not a date; use YYYY-MM-DD or an ISO date-time such as "
                           "2024-05-01T14:30", {"key": key, "value": value}, field="q") from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone)
    try:
        # Stored moments are UTC; one that has no UTC form (9999-12-31T23:59-12:00) would fail in the database.
        moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("{key}: '{value}' lies outside the years 1 to 9999 in UTC", {"key": key, "value": value},
                           field="q") from None
    return moment
