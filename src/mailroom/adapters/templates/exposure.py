"""Finding secret template variables where a mail client loads them without a click.

A mail client fetches images, stylesheets, frames, media and their posters as it shows a mail; a URL
there is requested from its host at once. A reset link in ``<img src>`` hands the code to that host.

:func:`find_exposures` reads an HTML template in two steps: Jinja's lexer locates every ``{{ ... }}``
and the names it uses; names assigned from a secret (``set``, ``with``, ``for``, macro parameters of a
macro called with one) become secret too. Each expression is replaced by a marker that carries its line,
everything else of Jinja by nothing, and :class:`html.parser.HTMLParser` tells in which element and
attribute, or in which ``<style>``, each marker ends up. Rendered HTML (no Jinja) is read the same way,
with markers put in place of the secret values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser

import jinja2

from mailroom.domain.templates import SecretExposure

_MARKER = re.compile(r"mrsecret(\d+)z", re.IGNORECASE)

# Attributes that never make a mail client fetch anything. A secret may sit in these, in a link's href,
# or in text; any other attribute is refused: an allowlist, so an attribute name the detector does not
# know, or one assembled by Jinja ("<img {% if x %}alt{% else %}src{% endif %}=...>" reads as "altsrc"),
# is refused too instead of slipping through.
_HARMLESS = frozenset({"alt", "title", "class", "id", "name", "lang", "dir", "width", "height", "align",
                       "valign", "target", "rel", "value", "placeholder", "label", "summary", "abbr", "headers",
                       "scope", "colspan", "rowspan", "border", "cellpadding", "cellspacing", "bgcolor", "color",
                       "face", "size", "hreflang", "type", "role", "tabindex"})
_LINKS = frozenset({"a", "area"})
_RAW_TEXT = frozenset({"style", "script"})


def sentinel(index: int) -> str:
    """A value that survives escaping, ``upper``/``lower`` and ``urlencode``, to find in rendered HTML."""
    return f"mrsecret{index}z"


def is_loaded(tag: str, attribute: str) -> bool:
    """Whether a value in this attribute may be fetched without a click (anything not known harmless)."""
    if tag in _LINKS and attribute == "href":
        return False
    if tag == "param" and attribute == "value":  # <param name=movie value=...> feeds a plug-in
        return True
    return not (attribute in _HARMLESS or attribute.startswith(("data-", "aria-")))


def find_exposures(env: jinja2.Environment | None, source: str, secrets: Iterable[str], *, part: str,
                   markers: Sequence[str] | None = None) -> list[SecretExposure]:
    """With ``env``, ``source`` is a template; without, it is rendered HTML whose markers index ``markers``.

    Raises jinja2.TemplateSyntaxError for a template that does not lex; callers translate it.
    """
    if env is None:
        names = list(markers or ())
        lines: list[tuple[str, int | None]] = [(name, None) for name in names]
        html = source
    else:
        html, lines = _neutralised(env, source, frozenset(secrets))
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    found: list[SecretExposure] = []
    for index, where in scanner.hits:
        if index < len(lines):
            variable, line = lines[index]
            found.append(SecretExposure(variable=variable, where=where, part=part, line=line))
    return found


def _neutralised(env: jinja2.Environment, source: str,
                 secrets: frozenset[str]) -> tuple[str, list[tuple[str, int | None]]]:
    """The HTML with each secret expression as a marker; the list gives each marker's variable and line."""
    tokens = list(env.lexer.tokeniter(source, None))
    tainted = _tainted(tokens, secrets)
    out: list[str] = []
    markers: list[tuple[str, int | None]] = []
    expression: list[tuple[int, str, str]] | None = None
    for lineno, kind, value in tokens:
        if kind == "variable_begin":
            expression = []
        elif kind == "variable_end" and expression is not None:
            used = [v for _, k, v in expression if k == "name" and v in tainted]
            if used:
                out.append(sentinel(len(markers)))
                markers.append((used[0], expression[0][0] if expression else lineno))
            else:
                out.append("value")
            expression = None
        elif expression is not None:
            expression.append((lineno, kind, value))
        elif kind == "data":  # text between tags, and the inside of {% raw %}; statements leave nothing
            out.append(value)
    return "".join(out), markers


def _statements(tokens: list[tuple[int, str, str]]) -> list[tuple[str, list[str], list[tuple[str, str]]]]:
    """Each ``{{ }}`` and ``{% %}`` as (kind, its names, its significant tokens)."""
    found: list[tuple[str, list[str], list[tuple[str, str]]]] = []
    current: list[tuple[str, str]] | None = None
    kind = ""
    for _, lexeme, value in tokens:
        if lexeme in ("variable_begin", "block_begin"):
            current, kind = [], lexeme.removesuffix("_begin")
        elif lexeme in ("variable_end", "block_end") and current is not None:
            found.append((kind, [v for k, v in current if k == "name"], current))
            current = None
        elif current is not None and lexeme != "whitespace":
            current.append((lexeme, value))
    return found


def _tainted(tokens: list[tuple[int, str, str]], secrets: frozenset[str]) -> frozenset[str]:
    """The secrets plus every name that may hold one: a fixpoint over the assignments of the template."""
    statements = _statements(tokens)
    macros: dict[str, list[str]] = {}
    for kind, names, significant in statements:
        if kind == "block" and names[:1] == ["macro"] and len(names) > 1:
            macros[names[1]] = _macro_parameters(significant)
    tainted = set(secrets)
    block_set: str | None = None  # {% set x %}...{% endset %}: x holds what the body writes
    for _ in range(20):
        before = len(tainted)
        for kind, names, significant in statements:
            uses_secret = any(n in tainted for n in names)
            head = names[0] if names else ""
            if kind == "block" and head == "set" and not any(v == "=" for _, v in significant):
                block_set = names[1] if len(names) > 1 else None
            elif kind == "block" and head == "endset":
                block_set = None
            elif kind == "block" and head in ("set", "with", "for") and uses_secret:
                tainted |= set(_targets(head, significant))
            elif kind == "variable" and uses_secret and block_set:
                tainted.add(block_set)
            if uses_secret:  # a macro called with a secret: its parameters may hold it
                for name in names:
                    tainted |= set(macros.get(name, ()))
        if len(tainted) == before:
            break
    return frozenset(tainted)


def _targets(head: str, significant: list[tuple[str, str]]) -> list[str]:
    """The names a ``set``, ``with`` or ``for`` binds (conservatively, every name before ``=``/``in``)."""
    targets: list[str] = []
    body = significant[1:]
    if head == "for":
        for kind, value in body:
            if kind == "name" and value == "in":
                break
            if kind == "name":
                targets.append(value)
        return targets
    expecting = True
    depth = 0
    for kind, value in body:
        if kind == "operator" and value in "([{":
            depth += 1
        elif kind == "operator" and value in ")]}":
            depth -= 1
        elif kind == "operator" and value == "," and depth == 0:
            expecting = True
        elif kind == "operator" and value == "=" and depth == 0:
            expecting = False
        elif kind == "name" and expecting:
            targets.append(value)
    return targets


def _macro_parameters(significant: list[tuple[str, str]]) -> list[str]:
    parameters: list[str] = []
    depth = 0
    after_default = False
    for kind, value in significant[2:]:
        if kind == "operator" and value == "(":
            depth += 1
        elif kind == "operator" and value == ")":
            depth -= 1
        elif kind == "operator" and value == "=" and depth == 1:
            after_default = True
        elif kind == "operator" and value == "," and depth == 1:
            after_default = False
        elif kind == "name" and depth == 1 and not after_default:
            parameters.append(value)
    return parameters


class _Scanner(HTMLParser):
    """Collects (marker index, where) for each marker inside something a mail client loads."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hits: list[tuple[int, str]] = []
        self._raw: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and is_loaded(tag, name):
                where = "style" if name == "style" else f"<{tag} {name}>"
                self.hits += [(int(m.group(1)), where) for m in _MARKER.finditer(value)]
        self._raw = tag if tag in _RAW_TEXT else None

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self._raw = None

    def handle_endtag(self, tag: str) -> None:
        self._raw = None

    def handle_data(self, data: str) -> None:
        if self._raw is not None:
            self.hits += [(int(m.group(1)), f"<{self._raw}>") for m in _MARKER.finditer(data)]
