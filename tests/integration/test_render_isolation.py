"""The render processes behind every template render (issue #11 item 2): long-lived, reused, limited in
CPU and memory by the OS, replaced when a template kills one, holding nothing of the server, and gone
when the renderer closes. Real child processes; the in-sandbox guards are switched off where a test
shows that the process limits hold by themselves."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom.adapters.templates.isolated import IsolatedTemplateRenderer
from mailroom.domain.templates import Template
from mailroom.errors import InvalidModel, TemplateRecursion, TemplateTooLarge, TemplateTooSlow

SQUARINGS = "{% set a = 9**999 %}" + "{% set a = a*a %}" * 15 + "{{ a > 1 }}"


def template(html: str) -> Template:
    return Template(set_id="s", name="t", locale="en", subject="Hi {{ name }}", html=html)


def gone(pid: int) -> bool:
    """No process, and no zombie either: the parent reaped it."""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "\nState:\tZ" not in status.read_text()


@pytest.fixture
def unguarded() -> Iterator[IsolatedTemplateRenderer]:
    renderer = IsolatedTemplateRenderer(cpu_seconds=1, memory_mb=128, processes=1, guards=False)
    yield renderer
    renderer.close()


def test_a_render_process_is_reused_and_holds_nothing_of_the_server() -> None:
    renderer = IsolatedTemplateRenderer()
    try:
        first = renderer.render(template("<p>{{ name }}</p>"), [], {"name": "Ann"})
        assert (first.subject, first.html) == ("Hi Ann", "<p>Ann</p>")
        [pid] = renderer.process_ids()
        for name in ("Bob", "Cy"):
            assert renderer.render(template("<p>{{ name }}</p>"), [], {"name": name}).subject == f"Hi {name}"
        assert renderer.process_ids() == [pid]
        assert Path(f"/proc/{pid}/environ").read_bytes() == b""  # no MAILROOM_SECRET_KEY, no database URL
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert not [link for link in links if link.startswith("socket:") or link.endswith((".db", ".sqlite"))]
    finally:
        renderer.close()
    assert gone(pid) and renderer.process_ids() == []


def test_cpu_is_limited_by_the_process_even_inside_one_c_call(unguarded: IsolatedTemplateRenderer) -> None:
    unguarded.render(template("<p>ok</p>"), [], {"name": "Ann"})
    [pid] = unguarded.process_ids()
    with pytest.raises(TemplateTooSlow, match="more than 1 s of CPU"):
        unguarded.render(template(SQUARINGS), [], {"name": "Ann"})
    assert gone(pid)
    assert unguarded.render(template("<p>{{ name }}</p>"), [], {"name": "Bo"}).html == "<p>Bo</p>"  # a fresh one


def test_a_python_loop_is_stopped_at_its_cpu_budget_with_the_process_kept(unguarded: IsolatedTemplateRenderer) -> None:
    with pytest.raises(TemplateTooSlow, match="more than 1 s of CPU"):
        unguarded.render(template("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"),
                         [], {"name": "Ann"})
    assert unguarded.render(template("<p>x</p>"), [], {"name": "Ann"}).html == "<p>x</p>"


@pytest.mark.parametrize("html", ["{{ 'x'|center(10**10) }}", "{{ 'x'.ljust(10**10) }}",
                                  "{{ '%10000000000s'|format('x') }}",
                                  "{% set s = 'x' * 999999 %}{{ ([s] * 300)|join|length }}"])
def test_memory_is_limited_by_the_process(unguarded: IsolatedTemplateRenderer, html: str) -> None:
    with pytest.raises(TemplateTooLarge, match="more than 128 MB of memory"):
        unguarded.render(template(html), [], {"name": "Ann"})
    assert unguarded.render(template("<p>x</p>"), [], {"name": "Ann"}).html == "<p>x</p>"


def test_a_recursive_macro_is_a_clear_error(unguarded: IsolatedTemplateRenderer) -> None:
    with pytest.raises(TemplateRecursion, match="calls itself"):
        unguarded.render(template("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"), [], {"name": "Ann"})


def test_a_model_the_renderer_cannot_take_is_refused() -> None:
    renderer = IsolatedTemplateRenderer(processes=1)
    try:
        with pytest.raises(InvalidModel, match="cannot take"):
            renderer.render(template("<p>{{ name }}</p>"), [], {"name": lambda: "Ann"})
    finally:
        renderer.close()


def test_concurrent_renders_share_the_processes() -> None:
    renderer = IsolatedTemplateRenderer(processes=2)
    results: list[str] = []

    def work(name: str) -> None:
        for _ in range(10):
            results.append(renderer.render(template("<p>{{ name }}</p>"), [], {"name": name}).subject)

    threads = [threading.Thread(target=work, args=(f"n{i}",)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(results) == sorted(f"Hi n{i}" for i in range(4) for _ in range(10))
        assert 1 <= len(renderer.process_ids()) <= 2
    finally:
        renderer.close()
