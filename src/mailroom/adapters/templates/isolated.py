"""Rendering in child processes with hard limits: no template can freeze or exhaust the server.

Jinja's sandbox keeps a template inside its model, not inside a CPU or memory budget: work that writes
no output (squaring a huge number, nested loops) or one call that builds a huge string ran in the
server's own process, holding the GIL, until it ended; ``/health`` waited with everything else. Here every
Jinja call (check, variables, secret check, render) runs in one of a few long-lived child processes:

- the child limits its own address space (RLIMIT_AS: its footprint after start-up plus ``memory_mb``)
  and the CPU time of each request: a profiling timer stops Python code at ``cpu_seconds`` with a
  precise answer; RLIMIT_CPU kills the process soon after if one C call does not return;
- the parent waits for the answer with a wall-clock deadline and kills the child when it passes, so
  even a child that escaped its limits is stopped; a killed or spent child is replaced on the next use;
- children are fresh interpreters (``subprocess``, never a ``fork`` of the server): they hold no
  database connection, settings or secrets (their environment is empty), and import only Jinja,
  Babel, html2text and the template modules, not the ``mailroom`` package's public API;
- requests are pickled (the parent trusts its own data); answers are JSON, so the parent never
  unpickles anything a template could have shaped.

A render costs one round trip over two pipes. Children start on first use, are reused, and end with
:meth:`IsolatedTemplateRenderer.close`, at interpreter exit, or when the parent's pipe closes.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import mailroom
from mailroom.adapters.templates.jinja import JinjaTemplateRenderer
from mailroom.domain.templates import RenderedTemplate, SecretExposure, Template
from mailroom.errors import (
    ConfigurationError,
    InvalidInput,
    InvalidModel,
    SandboxViolation,
    TemplateLimitExceeded,
    TemplateRecursion,
    TemplateRenderError,
    TemplateSyntaxError,
    TemplateTooLarge,
    TemplateTooSlow,
    Text,
)

# The child imports only what rendering needs: a bare ``mailroom`` package object stands in for the real
# one, whose __init__ would import the whole application (SQLAlchemy, the SMTP client, ...).
_BOOTSTRAP = """\
import json, sys, types
config = json.loads(sys.argv[1])
sys.path[:] = config["sys_path"]
package = types.ModuleType("mailroom")
package.__path__ = config["package_path"]
sys.modules["mailroom"] = package
from mailroom.adapters.templates.render_child import serve
serve(config)
"""
_MAX_REPLY_BYTES = 512 * 1024 * 1024
_RENDER_ERRORS: dict[str, type[TemplateRenderError]] = {
    cls.__name__: cls for cls in (TemplateRenderError, SandboxViolation, TemplateLimitExceeded, TemplateTooLarge,
                                  TemplateRecursion)}


class _Deadline(Exception):
    pass


class _Ended(Exception):
    def __init__(self, returncode: int | None) -> None:
        super().__init__(returncode)
        self.returncode = returncode


class _Child:
    """One render process and its two pipes."""

    def __init__(self, config: dict[str, Any], start_timeout_seconds: float) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and code, no user input
            [sys.executable, "-c", _BOOTSTRAP, json.dumps(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            bufsize=0, env={}, close_fds=True)
        try:
            ready = self._read_reply(time.monotonic() + start_timeout_seconds)
        except (_Deadline, _Ended) as exc:
            self.stop()
            raise RuntimeError(f"the template render process did not start ({exc!r})") from None
        if not ready.get("ready"):
            self.stop()
            raise RuntimeError("the template render process did not start")

    def ask(self, request: bytes, wall_seconds: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            frame = memoryview(len(request).to_bytes(4, "big") + request)
            while frame:
                written = self.process.stdin.write(frame)
                frame = frame[written or 0:]
        except (BrokenPipeError, OSError):
            raise _Ended(self._ended()) from None
        return self._read_reply(time.monotonic() + wall_seconds)

    def stop(self) -> None:
        """Kill and reap: no zombie is left behind."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def _read_reply(self, deadline: float) -> dict[str, Any]:
        size = int.from_bytes(self._read(4, deadline), "big")
        if size > _MAX_REPLY_BYTES:
            raise _Ended(None)
        reply: dict[str, Any] = json.loads(self._read(size, deadline))
        return reply

    def _read(self, size: int, deadline: float) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        data = bytearray()
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise _Deadline
            chunk = os.read(fd, min(size - len(data), 1 << 20))
            if not chunk:
                raise _Ended(self._ended())
            data += chunk
        return bytes(data)

    def _ended(self) -> int | None:
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None


def _stop_all(children: set[_Child], owner: int | None = None) -> None:
    if owner is not None and os.getpid() != owner:
        return  # a forked copy exiting: the processes belong to the parent
    for child in list(children):
        child.stop()
    children.clear()


class IsolatedTemplateRenderer:
    """Implements the ``TemplateRenderer`` port with Jinja running in up to ``processes`` child processes.

    ``cpu_seconds`` and ``memory_mb`` are the settings ``template_render_cpu_seconds`` and
    ``template_render_memory_mb``. ``guards=False`` drops the in-sandbox size checks, leaving the process
    limits alone (tests use it to show they hold by themselves).
    """

    def __init__(self, *, cpu_seconds: float = 2.0, memory_mb: int = 256, processes: int = 2,
                 max_output_chars: int = 1_000_000, guards: bool = True,
                 start_timeout_seconds: float = 60.0) -> None:
        if cpu_seconds <= 0:
            raise ConfigurationError(f"template_render_cpu_seconds must be positive, not {cpu_seconds}")
        if memory_mb < 16:
            raise ConfigurationError(f"template_render_memory_mb must be at least 16, not {memory_mb}")
        if processes < 1:
            raise ConfigurationError(f"a template renderer needs at least one process, not {processes}")
        self.cpu_seconds = cpu_seconds
        self.memory_mb = memory_mb
        # Wall time beyond the CPU budget: on a busy machine the child gets less than a whole core.
        self._wall_seconds = cpu_seconds + max(cpu_seconds, 2.0) + 1.0
        self._start_timeout = start_timeout_seconds
        self._config = {"cpu_seconds": cpu_seconds, "memory_mb": memory_mb, "max_output_chars": max_output_chars,
                        "guards": guards, "package_path": list(mailroom.__path__),
                        "sys_path": [p for p in sys.path if p]}
        self._locales = JinjaTemplateRenderer()  # choose_locale is Babel only: no template code runs
        self._lock = threading.Condition()
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
        self._max = processes
        self._starting = 0
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(self, _stop_all, self._children, self._pid)

    # --- the port -------------------------------------------------------------------------------

    def check(self, template: Template) -> None:
        self._call(template, "check", template)

    def variables_used(self, template: Template, partials: Sequence[Template]) -> set[str]:
        return set(self._call(template, "variables_used", template, list(partials)))

    def render(self, template: Template, partials: Sequence[Template], model: dict[str, object]) -> RenderedTemplate:
        parts = self._call(template, "render", template, list(partials), model)
        return RenderedTemplate(subject=parts["subject"], html=parts["html"], text=parts["text"],
                                locale=parts["locale"], template=parts["template"])

    def exposed_secrets(self, template: Template, partials: Sequence[Template],
                        secrets: frozenset[str]) -> list[SecretExposure]:
        found = self._call(template, "exposed_secrets", template, list(partials), frozenset(secrets))
        return [SecretExposure(variable=str(e["variable"]), where=str(e["where"]), part=str(e["part"]),
                               line=e["line"] if isinstance(e["line"], int) else None) for e in found]

    def choose_locale(self, requested: str | None, available: Sequence[str], default: str) -> str:
        return self._locales.choose_locale(requested, available, default)

    # --- the processes --------------------------------------------------------------------------

    def close(self) -> None:
        """End every render process (a busy one too: its caller gets an error). The next use starts anew."""
        with self._lock:
            children = set(self._children)
            self._children.clear()
            self._idle.clear()
            self._lock.notify_all()
        _stop_all(children)

    def process_ids(self) -> list[int]:
        """The pids of the live render processes (for tests and monitoring)."""
        with self._lock:
            return [child.process.pid for child in self._children]

    def _call(self, template: Template, op: str, *args: Any) -> Any:
        label = template.qualified_name
        try:
            request = pickle.dumps((op, args), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidModel(f"the model holds a value the renderer cannot take ({exc}); pass texts, numbers, "
                               "lists and dicts") from None
        child = self._checkout(label)
        healthy = False
        try:
            reply = child.ask(request, self._wall_seconds)
            healthy = not reply.get("restart")
        except _Deadline:
            raise TemplateTooSlow(label, self.cpu_seconds) from None
        except _Ended as ended:
            raise self._ended_error(label, ended.returncode) from None
        finally:
            self._checkin(child, healthy)
        if "ok" in reply:
            return reply["ok"]
        raise self._error(label, reply)

    def _checkout(self, label: str) -> _Child:
        with self._lock:
            if os.getpid() != self._pid:  # a forked copy of this process: the pipes belong to the parent
                self._pid, self._idle, self._children, self._starting = os.getpid(), [], set(), 0
            while not self._idle and len(self._children) + self._starting >= self._max:
                self._lock.wait()
            if self._idle:
                return self._idle.pop()
            self._starting += 1  # holds the slot while the child starts, outside the lock
        child: _Child | None = None
        try:
            child = _Child(self._config, self._start_timeout)
        except (OSError, RuntimeError) as exc:
            raise TemplateRenderError(label, f"the template renderer could not start: {exc}") from None
        finally:
            with self._lock:
                self._starting -= 1
                if child is not None:
                    self._children.add(child)
                self._lock.notify()
        return child

    def _checkin(self, child: _Child, healthy: bool) -> None:
        with self._lock:
            if healthy and child in self._children:
                self._idle.append(child)
                self._lock.notify()
                return
            self._children.discard(child)
            self._lock.notify()
        child.stop()

    def _ended_error(self, label: str, returncode: int | None) -> TemplateRenderError:
        if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return TemplateTooSlow(label, self.cpu_seconds)
        return TemplateTooLarge(label, f"the template needed more than {self.memory_mb} MB of memory (the render "
                                       f"process ended with {returncode})")

    def _error(self, label: str, reply: dict[str, Any]) -> InvalidInput:
        kind = reply.get("error")
        template = str(reply.get("template") or label)
        wired = reply.get("reason", "")
        reason = Text.from_json(wired) if isinstance(wired, dict) else str(wired)
        if kind == "TemplateTooSlow":
            return TemplateTooSlow(label, self.cpu_seconds)
        if kind == "MemoryLimit":
            return TemplateTooLarge(label, f"the template needed more than {self.memory_mb} MB of memory")
        if kind == "TemplateSyntaxError":
            line = reply.get("line")
            return TemplateSyntaxError(template, line if isinstance(line, int) else None, reason)
        message = reply.get("message", "")
        text = Text.from_json(message) if isinstance(message, dict) else Text(str(message))
        if kind == "InvalidModel":
            return InvalidModel(text)
        if kind == "InvalidInput":
            field = reply.get("field")
            return InvalidInput(text, field=field if isinstance(field, str) else None)
        return _RENDER_ERRORS.get(str(kind), TemplateRenderError)(template, reason)
