"""A template set as files, so teams keep templates in git: a folder, or the same tree in a zip.

    <set id>/
      set.toml                               id, name, description, tags, default_locale and, per
                                             template, [templates.<name>] description + variables
                                             (+ secret_variables = ["confirm_url"]: codes and links
                                             that may not go where a mail client loads by itself)
      partials/<name>.<locale>.html|.txt     layouts, headers, footers
      templates/<name>.<locale>.subject.txt
      templates/<name>.<locale>.html|.txt
"""

from __future__ import annotations

import io
import re
import tomllib
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from mailroom.domain.templates import Template, TemplateKind, TemplateSet
from mailroom.errors import InvalidInput

_FILE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]*)\.(?P<locale>[A-Za-z0-9-]+)\.(?P<part>subject\.txt|html|txt)$")
MAX_ZIP_BYTES = 20 * 1024 * 1024


def read_folder(folder: Path) -> tuple[TemplateSet, list[Template]]:
    if not (folder / "set.toml").is_file():
        raise InvalidInput(f"{folder} has no set.toml: not a template set folder", field="path")
    files = {str(p.relative_to(folder).as_posix()): p.read_text(encoding="utf-8")
             for p in folder.rglob("*") if p.is_file()}
    return parse_files(files, origin=str(folder))


def read_zip(data: bytes) -> tuple[TemplateSet, list[Template]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"not a zip file: {exc}", field="file") from None
    with archive:
        if sum(info.file_size for info in archive.infolist()) > MAX_ZIP_BYTES:
            raise InvalidInput(f"the zip unpacks to over {MAX_ZIP_BYTES} bytes", field="file")
        names = [n for n in archive.namelist() if not n.endswith("/")]
        roots = {PurePosixPath(n).parts[0] for n in names if len(PurePosixPath(n).parts) > 1}
        prefix = f"{roots.pop()}/" if len(roots) == 1 and not any(n == "set.toml" for n in names) else ""
        files = {n[len(prefix):]: archive.read(n).decode("utf-8") for n in names if n.startswith(prefix)}
    return parse_files(files, origin="zip")


def parse_files(files: Mapping[str, str], *, origin: str) -> tuple[TemplateSet, list[Template]]:
    try:
        manifest: dict[str, Any] = tomllib.loads(files["set.toml"])
    except KeyError:
        raise InvalidInput(f"{origin}: set.toml is missing", field="file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{origin}: set.toml: {exc}", field="file") from None
    template_set = TemplateSet(id=str(manifest.get("id", "")), name=str(manifest.get("name", "")),
                               description=str(manifest.get("description", "")),
                               tags=tuple(manifest.get("tags", ())),
                               default_locale=str(manifest.get("default_locale", "en")))
    meta: dict[str, Any] = manifest.get("templates", {})
    parts: dict[tuple[TemplateKind, str, str], dict[str, str]] = defaultdict(dict)
    for path, content in files.items():
        folder, _, filename = path.rpartition("/")
        kind = {"templates": TemplateKind.TEMPLATE, "partials": TemplateKind.PARTIAL}.get(folder)
        if kind is None:
            continue
        match = _FILE.match(filename)
        if match is None:
            raise InvalidInput(f"{origin}: {path} is not named <name>.<locale>.(subject.txt|html|txt)", field="file")
        parts[(kind, match["name"], match["locale"])][match["part"]] = content
    found = [
        Template(set_id=template_set.id, name=name, locale=locale, kind=kind,
                 subject=content.get("subject.txt", "").strip(), html=content.get("html"), text=content.get("txt"),
                 description=str(meta.get(name, {}).get("description", "")),
                 variables=_variables(meta.get(name, {}), locale),
                 secret_variables=frozenset(str(v) for v in meta.get(name, {}).get("secret_variables", ())))
        for (kind, name, locale), content in sorted(parts.items())
    ]
    return template_set, found


def _variables(meta: Mapping[str, Any], locale: str) -> dict[str, str]:
    """The template's variables; a locale may declare its own under ``[templates.<name>.locales.<locale>]``."""
    own = meta.get("locales", {}).get(locale, {}).get("variables")
    chosen = own if own is not None else meta.get("variables", {})
    return {str(k): str(v) for k, v in chosen.items()}


def to_files(template_set: TemplateSet, templates: Iterable[Template]) -> dict[str, str]:
    templates = list(templates)
    lines = [f"id = {_toml(template_set.id)}", f"name = {_toml(template_set.name)}",
             f"description = {_toml(template_set.description)}",
             f"tags = [{', '.join(_toml(t) for t in template_set.tags)}]",
             f"default_locale = {_toml(template_set.default_locale)}"]
    files: dict[str, str] = {}
    by_name: dict[str, list[Template]] = defaultdict(list)
    for t in templates:
        folder = "templates" if t.kind is TemplateKind.TEMPLATE else "partials"
        by_name[t.name].append(t)
        if t.kind is TemplateKind.TEMPLATE:
            files[f"{folder}/{t.name}.{t.locale}.subject.txt"] = t.subject + "\n"
        if t.html is not None:
            files[f"{folder}/{t.name}.{t.locale}.html"] = t.html
        if t.text is not None:
            files[f"{folder}/{t.name}.{t.locale}.txt"] = t.text
    for name, versions in sorted(by_name.items()):
        # The variables most locales declare are the template's; a locale that differs gets its own table.
        shared = max((dict(t.variables) for t in versions), key=lambda v: sum(dict(t.variables) == v for t in versions))
        lines += ["", f"[templates.{name}]", f"description = {_toml(versions[0].description)}"]
        secrets = sorted({v for t in versions for v in t.secret_variables})
        if secrets:
            lines.append(f"secret_variables = [{', '.join(_toml(v) for v in secrets)}]")
        lines += [f"[templates.{name}.variables]", *_assignments(shared)]
        for t in versions:
            if dict(t.variables) != shared:
                lines += [f'[templates.{name}.locales."{t.locale}".variables]', *_assignments(t.variables)]
    files["set.toml"] = "\n".join(lines) + "\n"
    return files


def write_folder(template_set: TemplateSet, templates: Iterable[Template], folder: Path) -> None:
    for path, content in to_files(template_set, templates).items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def write_zip(template_set: TemplateSet, templates: Iterable[Template]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, content in sorted(to_files(template_set, templates).items()):
            archive.writestr(f"{template_set.id}/{path}", content)
    return buffer.getvalue()


def _assignments(variables: Mapping[str, str]) -> list[str]:
    return [f"{name} = {_toml(sample)}" for name, sample in sorted(variables.items())]


def _toml(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("\t", "\\t")
    return f'"{escaped}"'
