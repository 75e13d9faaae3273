"""Rendering with Jinja2's sandbox: autoescaped HTML, plain text, strict variables, bounded output.

Each template's parts are loaded under names the layout can refer to: ``layout.html`` / ``layout.txt``
for a partial named ``layout``, so ``{% extends "layout.html" %}`` works in the HTML body and
``{% extends "layout.txt" %}`` in the text body. Autoescaping follows the name: ``.html`` parts only.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import html2text
import jinja2
import jinja2.meta
from babel import Locale, UnknownLocaleError, negotiate_locale
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailroom.domain.templates import RenderedTemplate, Template
from mailroom.errors import SandboxViolation, TemplateRenderError, TemplateSyntaxError

SUBJECT = "__subject__.txt"
BODY_HTML = "__body__.html"
BODY_TEXT = "__body__.txt"
# Globals a mail template has no use for; lipsum, cycler and joiner only widen the attack surface.
_REMOVED_GLOBALS = ("lipsum", "cycler", "joiner")


class MailSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on ``*`` and ``**``: ``{{ 'x' * 10**9 }}`` would exhaust memory
    before any output limit could see it."""

    intercepted_binops = frozenset({"*", "**"})
    max_power = 1000
    max_repeat = 1_000_000

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > self.max_power:
            raise SecurityError(f"exponent {right} is over the limit of {self.max_power}")
        if operator == "*":
            for count, other in ((left, right), (right, left)):
                if isinstance(count, int) and isinstance(other, str | list | tuple) \
                        and count * max(len(other), 1) > self.max_repeat:
                    raise SecurityError(f"repeating a value {count} times is over the limit")
        return super().call_binop(context, operator, left, right)


class JinjaTemplateRenderer:
    """Implements the ``TemplateRenderer`` port."""

    def __init__(self, *, max_output_chars: int = 1_000_000, max_seconds: float = 2.0,
                 cached_environments: int = 256) -> None:
        self._max_output = max_output_chars
        self._max_seconds = max_seconds
        self._cache: OrderedDict[tuple[tuple[str, str], ...], jinja2.Environment] = OrderedDict()
        self._cache_size = cached_environments

    # --- the port -------------------------------------------------------------------------------

    def check(self, template: Template) -> None:
        env = self._environment(template, ())
        for name in _parts(template):
            source = _sources(template, ())[name]
            try:
                env.parse(source, name=name)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateSyntaxError(f"{template.qualified_name} ({_part_label(name)})", exc.lineno,
                                          exc.message or str(exc)) from None

    def variables_used(self, template: Template, partials: Sequence[Template]) -> set[str]:
        """Variables of the template's parts and of the partials they extend or include, transitively."""
        env = self._environment(template, partials)
        sources = _sources(template, partials)
        pending = list(_parts(template))
        seen: set[str] = set()
        used: set[str] = set()
        while pending:
            name = pending.pop()
            if name in seen or name not in sources:
                continue
            seen.add(name)
            try:
                tree = env.parse(sources[name], name=name)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateSyntaxError(f"{template.qualified_name} ({_part_label(name)})", exc.lineno,
                                          exc.message or str(exc)) from None
            used |= jinja2.meta.find_undeclared_variables(tree)
            pending += [ref for ref in jinja2.meta.find_referenced_templates(tree) if ref]
        return used - set(env.globals)

    def render(self, template: Template, partials: Sequence[Template], model: dict[str, object]) -> RenderedTemplate:
        env = self._environment(template, partials)
        subject = self._render_part(env, template, SUBJECT, model)
        html = self._render_part(env, template, BODY_HTML, model) if template.html is not None else None
        if template.text is not None:
            text = self._render_part(env, template, BODY_TEXT, model)
        else:
            text = html_to_text(html or "")
        # One line whatever the model holds: a line break in a subject would be a header injection.
        return RenderedTemplate(subject=" ".join(subject.split()), html=html, text=text, locale=template.locale,
                                template=f"{template.set_id}/{template.name}")

    def choose_locale(self, requested: str | None, available: Sequence[str], default: str) -> str:
        if requested:
            try:
                locale = Locale.parse(requested.replace("-", "_"))
            except (ValueError, TypeError, UnknownLocaleError):
                locale = None
            if locale is not None:
                preferred = [str(locale).replace("_", "-"), locale.language]
                if locale.territory:
                    preferred.insert(1, f"{locale.language}-{locale.territory}")
                found = negotiate_locale(preferred, list(available), sep="-")
                if found:
                    return str(found)
        if default in available or not available:
            return default
        return available[0]

    # --- internals ------------------------------------------------------------------------------

    def _environment(self, template: Template, partials: Sequence[Template]) -> jinja2.Environment:
        sources = _sources(template, partials)
        key = tuple(sorted(sources.items()))  # by content: an edited, unsaved template is never stale
        env = self._cache.get(key)
        if env is not None:
            self._cache.move_to_end(key)
            return env
        env = MailSandbox(
            loader=jinja2.DictLoader(sources),
            undefined=jinja2.StrictUndefined,
            autoescape=lambda name: name is not None and name.endswith(".html"),
            auto_reload=False,
            keep_trailing_newline=True,
        )
        for name in _REMOVED_GLOBALS:
            env.globals.pop(name, None)
        self._cache[key] = env
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return env

    def _render_part(self, env: jinja2.Environment, template: Template, part: str, model: dict[str, object]) -> str:
        label = f"{template.qualified_name} ({_part_label(part)})"
        try:
            compiled = env.get_template(part)
            return self._bounded(compiled.generate(model), label)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateSyntaxError(label, exc.lineno, exc.message or str(exc)) from None
        except SecurityError as exc:
            raise SandboxViolation(label, f"not allowed in a template: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateRenderError(label, f"{exc.message}; the model has: "
                                             f"{', '.join(sorted(model)) or 'nothing'}") from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateRenderError(label, f"it uses {exc.name!r}, which this set has no partial for") from None
        except (TypeError, ValueError, ArithmeticError, LookupError, OverflowError) as exc:
            raise TemplateRenderError(label, f"{type(exc).__name__}: {exc}") from None

    def _bounded(self, chunks: Iterator[str], label: str) -> str:
        deadline = time.monotonic() + self._max_seconds
        size = 0
        out: list[str] = []
        for chunk in chunks:
            size += len(chunk)
            out.append(chunk)
            if size > self._max_output:
                raise TemplateRenderError(label, f"the output exceeds {self._max_output} characters (a runaway loop?)")
            if time.monotonic() > deadline:
                raise TemplateRenderError(label, f"rendering took over {self._max_seconds:g} s (a runaway loop?)")
        return "".join(out)


def html_to_text(html: str) -> str:
    """The text alternative of an HTML body, with links kept as readable URLs."""
    converter = html2text.HTML2Text()
    converter.body_width = 0  # mail clients wrap; hard breaks would split URLs
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.protect_links = True
    return converter.handle(html).strip() + "\n"


def _parts(template: Template) -> list[str]:
    names = [SUBJECT] if template.subject else []
    if template.html is not None:
        names.append(BODY_HTML)
    if template.text is not None:
        names.append(BODY_TEXT)
    return names


def _sources(template: Template, partials: Sequence[Template]) -> dict[str, str]:
    sources: dict[str, str] = {}
    for partial in partials:
        if partial.html is not None:
            sources[f"{partial.name}.html"] = partial.html
        if partial.text is not None:
            sources[f"{partial.name}.txt"] = partial.text
    sources[SUBJECT] = template.subject
    if template.html is not None:
        sources[BODY_HTML] = template.html
    if template.text is not None:
        sources[BODY_TEXT] = template.text
    return sources


def _part_label(name: str) -> str:
    return {SUBJECT: "subject", BODY_HTML: "html", BODY_TEXT: "text"}.get(name, name)
