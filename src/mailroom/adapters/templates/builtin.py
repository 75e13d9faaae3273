"""The template sets mailroom ships, read from the package's ``templates/builtin`` folders."""

from __future__ import annotations

from importlib import resources

from mailroom.adapters.templates.folder import parse_files
from mailroom.usecases.templates import BuiltinSet


def load_builtin_sets() -> list[BuiltinSet]:
    root = resources.files("mailroom") / "templates" / "builtin"
    found: list[BuiltinSet] = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir(), key=lambda entry: entry.name):
        if not folder.is_dir() or not (folder / "set.toml").is_file():
            continue
        files: dict[str, str] = {"set.toml": (folder / "set.toml").read_text(encoding="utf-8")}
        for sub in ("templates", "partials"):
            if (folder / sub).is_dir():
                for entry in (folder / sub).iterdir():
                    if entry.is_file():
                        files[f"{sub}/{entry.name}"] = entry.read_text(encoding="utf-8")
        template_set, templates = parse_files(files, origin=f"built-in {folder.name}")
        found.append(BuiltinSet(template_set=template_set, templates=tuple(templates)))
    return found
