"""Rendering with Jinja2's sandbox: autoescaped HTML, plain text, strict variables, bounded output.

Each template's parts are loaded under names the layout can refer to: ``layout.html`` / ``layout.txt``
for a partial named ``layout``, so ``{% extends "layout.html" %}`` works in the HTML body and
``{% extends "layout.txt" %}`` in the text body. Autoescaping follows the name: ``.html`` parts only.

This renderer runs Jinja in the calling process; :mod:`mailroom.adapters.templates.isolated` runs it in
child processes with hard CPU and memory limits. The guards here (sizes of texts and numbers, include
cycles, recursion) give precise messages; the child process limits are what cannot be bypassed.
"""

from __future__ import annotations

import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import html2text
import jinja2
import jinja2.meta
from babel import Locale, UnknownLocaleError, negotiate_locale
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailroom.adapters.templates.exposure import find_exposures, sentinel
from mailroom.domain.templates import RenderedTemplate, SecretExposure, Template, TemplateKind
from mailroom.errors import (
    InvalidInput,
    SandboxViolation,
    TemplateRecursion,
    TemplateRenderError,
    TemplateSyntaxError,
    TemplateTooLarge,
    Text,
)

SUBJECT = "__subject__.txt"
BODY_HTML = "__body__.html"
BODY_TEXT = "__body__.txt"
# Globals a mail template has no use for; lipsum, cycler and joiner only widen the attack surface.
_REMOVED_GLOBALS = ("lipsum", "cycler", "joiner")


class SizeLimit(SecurityError):
    """A text or number far larger than any mail needs: refused before it is built."""


# printf-style conversion specs and the spec part of str.format fields: where a width can hide.
_PRINTF_SPEC = re.compile(r"%%|%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


class MailSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on what can grow without writing output: ``{{ 'x' * 10**9 }}``,
    ``'x'|center(10**10)`` or squaring a huge number would exhaust memory or CPU before any output limit
    could see it. The child process limits stop whatever slips through; these give a precise message."""

    intercepted_binops = frozenset({"*", "**", "%"})
    max_power = 1000
    max_repeat = 1_000_000
    max_chars = 1_000_000
    max_int_bits = 100_000  # about 30,000 digits: far beyond any amount, id or date

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > self.max_power:
            raise SecurityError(f"exponent {right} is over the limit of {self.max_power}")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            self._check_int_bits(max(left.bit_length(), 1) * right)
        if operator == "*":
            for count, other in ((left, right), (right, left)):
                if isinstance(count, int) and isinstance(other, str | list | tuple) \
                        and count * max(len(other), 1) > self.max_repeat:
                    raise SecurityError(f"repeating a value {count} times is over the limit")
            if isinstance(left, int) and isinstance(right, int):
                self._check_int_bits(left.bit_length() + right.bit_length())
        if operator == "%" and isinstance(left, str):
            values = right if isinstance(right, tuple) else (right,)
            self.check_printf(left, values)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        receiver = getattr(__obj, "__self__", None)
        if isinstance(receiver, str):
            __self.check_str_method(receiver, getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            self.check_format(text, args, kwargs)
            return wrapped(*args, **kwargs)

        return checked

    # --- the size checks; each raises SizeLimit with the size it would have built ----------------

    def check_chars(self, size: int) -> None:
        if size > self.max_chars:
            raise SizeLimit(f"it would make a text of {size} characters, over the limit of {self.max_chars}")

    def _check_int_bits(self, bits: int) -> None:
        if bits > self.max_int_bits:
            raise SizeLimit(f"it would make a number of about {int(bits * 0.30103)} digits, over the limit of "
                            f"{int(self.max_int_bits * 0.30103)} digits")

    def check_str_method(self, text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        numbers = [a for a in (*args, *kwargs.values()) if isinstance(a, int)]
        if name in ("center", "ljust", "rjust", "zfill") and numbers:
            self.check_chars(max(numbers))
        elif name == "expandtabs" and numbers:
            self.check_chars(len(text) + text.count("\t") * max(numbers))
        elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            self.check_replace(text, args[0], args[1])
        elif name == "join" and args and isinstance(args[0], list | tuple):
            self.check_chars(len(text) * len(args[0]) + sum(len(v) for v in args[0] if isinstance(v, str)))
        elif name in ("format", "format_map"):
            self.check_format(text, args, kwargs)

    def check_replace(self, text: str, old: str, new: str) -> None:
        hits = len(text) + 1 if old == "" else text.count(old)
        self.check_chars(len(text) + hits * max(len(new) - len(old), 0))

    def check_printf(self, text: str, values: Sequence[Any]) -> None:
        for match in _PRINTF_SPEC.finditer(text):
            for number in match.groups():
                if number == "*":
                    self.check_chars(max([v for v in values if isinstance(v, int)], default=0))
                elif number:
                    self.check_chars(int(number))

    def check_format(self, text: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        for match in _FORMAT_SPEC.finditer(text):
            spec = match.group(1)
            for number in re.findall(r"\d+", spec):
                self.check_chars(int(number))
            if "{" in spec:  # a width taken from the arguments
                self.check_chars(max([v for v in (*args, *kwargs.values()) if isinstance(v, int)], default=0))


def _guarded_filters(env: MailSandbox) -> dict[str, Callable[..., Any]]:
    """Filters that can grow a text many times over, each checked before it runs."""
    filters = env.filters
    center, fmt, replace, indent = filters["center"], filters["format"], filters["replace"], filters["indent"]

    def do_center(value: Any, width: int = 80) -> Any:
        if isinstance(width, int):
            env.check_chars(width)
        return center(value, width)

    def do_format(value: Any, *args: Any, **kwargs: Any) -> Any:
        env.check_printf(str(value), args or tuple(kwargs.values()))
        return fmt(value, *args, **kwargs)

    def do_replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: int | None = None) -> Any:
        env.check_replace(str(value), str(old), str(new))
        return replace(eval_ctx, value, old, new, count)

    def do_indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> Any:
        size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        env.check_chars(len(str(value)) + (str(value).count("\n") + 1) * size)
        return indent(value, width, first, blank)

    do_replace.jinja_pass_arg = replace.jinja_pass_arg  # type: ignore[attr-defined]  # eval context first
    return {"center": do_center, "format": do_format, "replace": do_replace, "indent": do_indent}


class JinjaTemplateRenderer:
    """Implements the ``TemplateRenderer`` port in the calling process.

    ``guards=False`` leaves only Jinja's own sandbox (tests use it to show the process limits hold alone).
    """

    def __init__(self, *, max_output_chars: int = 1_000_000, max_seconds: float = 2.0,
                 cached_environments: int = 256, guards: bool = True) -> None:
        self._max_output = max_output_chars
        self._max_seconds = max_seconds
        self._guards = guards
        self._cache: OrderedDict[tuple[tuple[str, str], ...], jinja2.Environment] = OrderedDict()
        self._cache_size = cached_environments
        self._acyclic: weakref.WeakSet[jinja2.Environment] = weakref.WeakSet()  # parsed once per content

    # --- the port -------------------------------------------------------------------------------

    def check(self, template: Template) -> None:
        """Compiles every part (Python's own limits on nesting show up only then) and refuses include cycles.
        A partial is loaded under its own name too, so ``{% include 'layout.html' %}`` in ``layout`` is seen."""
        own = [template] if template.kind is TemplateKind.PARTIAL else []
        env = self._environment(template, own)
        sources = _sources(template, own)
        for name in _parts(template):
            label = f"{template.qualified_name} ({_part_label(name)})"
            with _translated(label):
                env.compile(sources[name], name=name)
        self._refuse_cycles(env, template, sources)

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
            with _translated(f"{template.qualified_name} ({_part_label(name)})"):
                tree = env.parse(sources[name], name=name)
            used |= jinja2.meta.find_undeclared_variables(tree)
            pending += [ref for ref in jinja2.meta.find_referenced_templates(tree) if ref]
        return used - set(env.globals)

    def render(self, template: Template, partials: Sequence[Template], model: dict[str, object]) -> RenderedTemplate:
        env = self._environment(template, partials)
        self._refuse_cycles(env, template, _sources(template, partials))
        subject = self._render_part(env, template, SUBJECT, model)
        html = self._render_part(env, template, BODY_HTML, model) if template.html is not None else None
        if template.text is not None:
            text = self._render_part(env, template, BODY_TEXT, model)
        else:
            text = html_to_text(html or "")
        # One line whatever the model holds: a line break in a subject would be a header injection.
        return RenderedTemplate(subject=" ".join(subject.split()), html=html, text=text, locale=template.locale,
                                template=f"{template.set_id}/{template.name}")

    def exposed_secrets(self, template: Template, partials: Sequence[Template],
                        secrets: frozenset[str]) -> list[SecretExposure]:
        """Where the HTML puts a secret variable into something a mail client loads by itself.

        Two looks: the source, with each ``{{ ... }}`` located by Jinja's lexer (gives the line, and sees
        every branch), and the HTML rendered from the sample values with a marker in place of each
        secret (sees blocks filled into a layout, macros and filters). Either finding refuses the save.
        """
        if template.html is None or not secrets:
            return []
        env = self._environment(template, partials)
        with _translated(f"{template.qualified_name} (html)"):
            found = find_exposures(env, template.html, secrets, part="html")
        names = sorted(secrets)
        model: dict[str, object] = dict(template.variables)
        model.update({name: sentinel(i) for i, name in enumerate(names)})
        try:
            html = self._render_part(env, template, BODY_HTML, model)
        except InvalidInput:
            return found  # the samples do not render; the source check above still holds
        seen = {(e.variable, e.where) for e in found}
        for exposure in find_exposures(None, html, secrets, part="html", markers=names):
            if (exposure.variable, exposure.where) not in seen:
                seen.add((exposure.variable, exposure.where))
                found.append(SecretExposure(variable=exposure.variable, where=exposure.where, part="html", line=None))
        return found

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
        options: dict[str, Any] = {
            "loader": jinja2.DictLoader(sources), "undefined": jinja2.StrictUndefined,
            "autoescape": lambda name: name is not None and name.endswith(".html"),
            "auto_reload": False, "keep_trailing_newline": True,
        }
        if self._guards:
            guarded = MailSandbox(**options)
            guarded.max_chars = self._max_output
            guarded.filters.update(_guarded_filters(guarded))
            env = guarded
        else:
            env = ImmutableSandboxedEnvironment(**options)
        for name in _REMOVED_GLOBALS:
            env.globals.pop(name, None)
        self._cache[key] = env
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return env

    def _refuse_cycles(self, env: jinja2.Environment, template: Template, sources: Mapping[str, str]) -> None:
        """A part that includes or extends itself, directly or through partials, would recurse until the
        stack runs out: refused with the chain. Names computed at render time are left to the recursion
        guard in :meth:`_render_part`."""
        if env in self._acyclic:  # environments are cached by content: the same sources were walked
            return
        references: dict[str, list[str]] = {}
        for name, source in sources.items():
            with _translated(f"{template.qualified_name} ({_part_label(name)})"):
                tree = env.parse(source, name=name)
            references[name] = [ref for ref in jinja2.meta.find_referenced_templates(tree) if ref]

        def walk(name: str, chain: list[str]) -> None:
            for ref in references.get(name, ()):
                if ref in chain:
                    loop = " → ".join(_part_label(n) for n in [*chain[chain.index(ref):], ref])
                    raise TemplateRecursion(f"{template.qualified_name} ({_part_label(chain[0])})",
                                            f"templates may not include themselves ({loop})")
                walk(ref, [*chain, ref])

        for part in _parts(template):
            walk(part, [part])
        self._acyclic.add(env)

    def _render_part(self, env: jinja2.Environment, template: Template, part: str, model: dict[str, object]) -> str:
        label = f"{template.qualified_name} ({_part_label(part)})"
        try:
            with _translated(label):
                compiled = env.get_template(part)
            return self._bounded(compiled.generate(model), label)
        except SizeLimit as exc:
            raise TemplateTooLarge(label, str(exc)) from None
        except SecurityError as exc:
            raise SandboxViolation(label, f"not allowed in a template: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateRenderError(label, Text("{reason}; the model has: {names}" if model else
                                                  "{reason}; the model has: nothing",
                                                  {"reason": jinja_message(exc.message or str(exc)),
                                                   "names": ", ".join(sorted(model))})) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateRenderError(label, Text("it uses {name!r}, which this set has no partial for",
                                                  {"name": exc.name})) from None
        except RecursionError:
            raise TemplateRecursion(label, "the template calls itself too deeply (a recursive macro, or a "
                                           "partial that includes itself?)") from None
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
                raise TemplateTooLarge(label, f"the output exceeds {self._max_output} characters (a runaway loop?)")
            if time.monotonic() > deadline:
                raise TemplateRenderError(label, f"rendering took over {self._max_seconds:g} s (a runaway loop?)")
        return "".join(out)


class _translated:
    """Parsing and compiling errors as mailroom errors: Jinja's syntax errors with their line, and the
    limits of Python's parser and compiler (deep nesting) as a syntax error a user can act on."""

    def __init__(self, label: str) -> None:
        self._label = label

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, jinja2.TemplateSyntaxError):
            raise TemplateSyntaxError(self._label, exc.lineno, jinja_message(exc.message or str(exc))) from None
        if isinstance(exc, RecursionError | SyntaxError | MemoryError):
            # RecursionError from Jinja's parser, SyntaxError ("too many statically nested blocks") and
            # IndentationError from compiling what Jinja generated.
            raise TemplateSyntaxError(self._label, None, "the template nests blocks or brackets too deeply; "
                                                         "flatten it (use a macro or fewer levels)") from None


# Jinja's own messages for the mistakes people make most, as message ids (the same English); any other stays
# Jinja's English.
_JINJA_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template) for pattern, template in (
        (r"'(?P<name>[^']*)' is undefined", "{name!r} is undefined"),
        (r"Expected an expression, got '(?P<got>[^']*)'", "Expected an expression, got {got!r}"),
        (r"expected token '(?P<expected>[^']*)', got '(?P<got>[^']*)'", "expected token {expected!r}, got {got!r}"),
        (r"unexpected '(?P<got>[^']*)'", "unexpected {got!r}"),
        (r"Encountered unknown tag '(?P<name>[^']*)'\.", "Encountered unknown tag {name!r}."),
        (r"unexpected end of template, expected '(?P<expected>[^']*)'\.",
         "unexpected end of template, expected {expected!r}."),
    ))


def jinja_message(message: str) -> Text | str:
    """Jinja's message as a :class:`Text` a UI can translate, when it is one of the common ones."""
    for pattern, template in _JINJA_MESSAGES:
        found = pattern.fullmatch(message.strip())
        if found:
            return Text(template, found.groupdict())
    return message


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
