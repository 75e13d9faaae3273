"""The child side of :mod:`mailroom.adapters.templates.isolated`: one render process's loop.

Started as a fresh interpreter with an empty environment. It limits its own address space once it has
imported what it needs, then answers one request at a time: a 4-byte length and a pickle in (the parent
trusts its own data), a 4-byte length and JSON out (the parent never unpickles what a template shaped).
Each request gets ``cpu_seconds`` of CPU: a profiling timer stops Python code with a precise answer, and
RLIMIT_CPU kills the process a little later if one C call (a huge multiplication) does not return.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from mailroom.adapters.templates.jinja import JinjaTemplateRenderer
from mailroom.domain.templates import Template
from mailroom.errors import InvalidInput, TemplateRenderError, TemplateSyntaxError, Text

_armed = False


class _CpuLimit(BaseException):
    """Raised by the profiling timer; a BaseException, so no ``except Exception`` in Jinja swallows it."""


def _on_cpu_limit(signum: int, frame: object) -> None:
    if _armed:
        raise _CpuLimit


def serve(config: dict[str, Any]) -> None:
    renderer = JinjaTemplateRenderer(max_output_chars=int(config["max_output_chars"]), max_seconds=1e9,
                                     guards=bool(config["guards"]))
    _warm_up(renderer)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the protocol owns the pipe: a stray print must not corrupt it
    source = sys.stdin.buffer
    _limit_memory(int(config["memory_mb"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGPROF, _on_cpu_limit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in `mailroom dev` is for the parent to handle
    _write(out, {"ready": True})
    cpu_seconds = float(config["cpu_seconds"])
    while True:
        header = source.read(4)
        if len(header) < 4:
            return  # the parent closed the pipe or died: nothing more to do
        request = source.read(int.from_bytes(header, "big"))
        reply = _handle(renderer, request, cpu_seconds)
        _write(out, reply)
        if reply.get("restart"):
            return


def _wire(reason: str | Text) -> str | dict[str, Any]:
    """A reason as JSON: a :class:`Text` keeps its message id and params across the pipe."""
    return reason.to_json() if isinstance(reason, Text) else reason


def _handle(renderer: JinjaTemplateRenderer, request: bytes, cpu_seconds: float) -> dict[str, Any]:
    global _armed
    try:
        op, args = pickle.loads(request)  # noqa: S301 - written by the parent, which trusts its own data
    except Exception as exc:  # a model value whose class the child cannot import, for one
        return {"error": "InvalidModel", "message": f"the model holds a value the renderer cannot load "
                                                    f"({type(exc).__name__}: {exc}); pass texts, numbers, "
                                                    "lists and dicts"}
    used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (int(used + cpu_seconds) + 2, hard))
    out_of_memory = False
    try:
        try:
            signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
            _armed = True
            result = _OPERATIONS[op](renderer, *args)
        finally:
            _armed = False
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _CpuLimit:
        return {"error": "TemplateTooSlow"}
    except MemoryError:
        out_of_memory = True  # answered below, once the traceback and what it holds are gone
    except TemplateSyntaxError as exc:
        return {"error": "TemplateSyntaxError", "template": exc.template, "line": exc.line,
                "reason": _wire(exc.reason)}
    except TemplateRenderError as exc:
        return {"error": type(exc).__name__, "template": exc.template, "reason": _wire(exc.reason)}
    except InvalidInput as exc:
        return {"error": "InvalidInput", "message": exc.text.to_json(), "field": exc.field}
    except RecursionError:
        return {"error": "TemplateRecursion", "reason": "the template calls itself too deeply"}
    except Exception as exc:
        return {"error": "TemplateRenderError", "reason": f"{type(exc).__name__}: {exc}"}
    if out_of_memory:
        return {"error": "MemoryLimit", "restart": True}  # a process that ran out may be in a bad state
    return {"ok": result}


def _check(renderer: JinjaTemplateRenderer, template: Template) -> None:
    renderer.check(template)


def _variables_used(renderer: JinjaTemplateRenderer, template: Template, partials: list[Template]) -> list[str]:
    return sorted(renderer.variables_used(template, partials))


def _render(renderer: JinjaTemplateRenderer, template: Template, partials: list[Template],
            model: dict[str, object]) -> dict[str, Any]:
    rendered = renderer.render(template, partials, model)
    return {"subject": rendered.subject, "html": rendered.html, "text": rendered.text, "locale": rendered.locale,
            "template": rendered.template}


def _exposed_secrets(renderer: JinjaTemplateRenderer, template: Template, partials: list[Template],
                     secrets: frozenset[str]) -> list[dict[str, Any]]:
    return [{"variable": e.variable, "where": e.where, "part": e.part, "line": e.line}
            for e in renderer.exposed_secrets(template, partials, secrets)]


_OPERATIONS: dict[str, Callable[..., Any]] = {"check": _check, "variables_used": _variables_used,
                                              "render": _render, "exposed_secrets": _exposed_secrets}


def _warm_up(renderer: JinjaTemplateRenderer) -> None:
    """Import lazily loaded modules now, before the memory limit counts them against a template."""
    sample = Template(set_id="warm-up", name="warm_up", locale="en", subject="{{ x }}",
                      html="<p>{{ x|e }}</p><a href='{{ x }}'>{{ x }}</a>")
    renderer.check(sample)
    renderer.render(sample, [], {"x": "1"})
    renderer.exposed_secrets(sample, [], frozenset({"x"}))


def _limit_memory(memory_mb: int) -> None:
    """RLIMIT_AS: what the process maps now (interpreter, Jinja, Babel) plus ``memory_mb`` for templates."""
    size = 0
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    size = int(line.split()[1]) * 1024
    except OSError:
        size = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 * 2
    limit = size + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _write(out: BinaryIO, reply: dict[str, Any]) -> None:
    data = json.dumps(reply, ensure_ascii=False).encode("utf-8")
    out.write(len(data).to_bytes(4, "big") + data)
    out.flush()
