"""Template management and template mail: edit at run time, version every save, render, send.

A template mail is rendered when it is queued, so the mail log shows exactly what went out.
"""

from __future__ import annotations

import builtins
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mailroom.domain.idempotency import IdempotencyKey, Queued
from mailroom.domain.mail import AddressesInput, AddressInput, Attachment, Mail, Priority
from mailroom.domain.permissions import EDIT_TEMPLATES, READ_TEMPLATES, SEND_MAIL, Subject
from mailroom.domain.templates import (
    MissingTranslation,
    RenderedTemplate,
    Template,
    TemplateKind,
    TemplateSet,
    TemplateVersion,
    is_secret_name,
    normalise_locale,
)
from mailroom.errors import InvalidInput, InvalidModel, SecretVariableExposed, TemplateNotFound, TemplateSetNotFound
from mailroom.ports import Clock, TemplateRenderer, TemplateStore
from mailroom.usecases.send_mail import SendMail


@dataclass(frozen=True, slots=True)
class BuiltinSet:
    """A set shipped with mailroom (or the application): created when missing, never overwritten."""

    template_set: TemplateSet
    templates: tuple[Template, ...]


class TemplateUseCases:
    def __init__(self, *, store: TemplateStore, renderer: TemplateRenderer, send: SendMail, clock: Clock,
                 builtin_sets: Sequence[BuiltinSet] = ()) -> None:
        self._store = store
        self._renderer = renderer
        self._send = send
        self._clock = clock
        self._builtins = {b.template_set.id: b for b in builtin_sets}

    # --- sets -----------------------------------------------------------------------------------

    def list_sets(self, subject: Subject) -> builtins.list[TemplateSet]:
        subject.require(READ_TEMPLATES)
        return self._store.list_sets()

    def get_set(self, subject: Subject, set_id: str) -> TemplateSet:
        subject.require(READ_TEMPLATES)
        return self._store.get_set(set_id)

    def save_set(self, subject: Subject, template_set: TemplateSet) -> TemplateSet:
        subject.require(EDIT_TEMPLATES)
        self._store.save_set(template_set)
        return template_set

    def delete_set(self, subject: Subject, set_id: str) -> None:
        subject.require(EDIT_TEMPLATES)
        self._store.delete_set(set_id)

    # --- templates ------------------------------------------------------------------------------

    def list_templates(self, subject: Subject, set_id: str) -> builtins.list[Template]:
        subject.require(READ_TEMPLATES)
        self._store.get_set(set_id)
        return self._store.list_templates(set_id)

    def get_template(self, subject: Subject, set_id: str, name: str, locale: str) -> Template:
        subject.require(READ_TEMPLATES)
        return self._store.get_template(set_id, name, normalise_locale(locale))

    def save_template(self, subject: Subject, template: Template) -> Template:
        """Store a new version after checking that it compiles and declares every variable it uses."""
        subject.require(EDIT_TEMPLATES)
        self._store.get_set(template.set_id)
        self._check(template)
        return self._store.save_template(template, saved_by=subject.user_id, now=self._clock.now())

    def delete_template(self, subject: Subject, set_id: str, name: str, locale: str | None = None) -> int:
        subject.require(EDIT_TEMPLATES)
        removed = self._store.delete_template(set_id, name, normalise_locale(locale) if locale else None)
        if not removed:
            raise TemplateNotFound(set_id, name, locale)
        return removed

    def versions(self, subject: Subject, set_id: str, name: str, locale: str) -> builtins.list[TemplateVersion]:
        subject.require(READ_TEMPLATES)
        return self._store.versions(set_id, name, normalise_locale(locale))

    def diff(self, subject: Subject, set_id: str, name: str, locale: str, old: int, new: int) -> str:
        """A unified diff of subject, HTML and text between two versions."""
        by_number = {v.version: v for v in self.versions(subject, set_id, name, locale)}
        missing = [n for n in (old, new) if n not in by_number]
        if missing:
            raise InvalidInput(f"{set_id}/{name}.{locale} has no version {missing[0]} "
                               f"(it has {', '.join(map(str, sorted(by_number)))})", field="version")
        a, b = by_number[old], by_number[new]
        chunks: builtins.list[str] = []
        for part, before, after in (("subject", a.subject, b.subject), ("html", a.html, b.html),
                                    ("text", a.text, b.text)):
            chunks += difflib.unified_diff((before or "").splitlines(keepends=True),
                                           (after or "").splitlines(keepends=True),
                                           fromfile=f"{part} v{old}", tofile=f"{part} v{new}")
        return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)

    def restore_version(self, subject: Subject, set_id: str, name: str, locale: str, version: int) -> Template:
        """Make an old version current again, as a new version (history is never rewritten)."""
        subject.require(EDIT_TEMPLATES)
        old = next((v for v in self.versions(subject, set_id, name, locale) if v.version == version), None)
        if old is None:
            raise InvalidInput(f"{set_id}/{name}.{locale} has no version {version}", field="version")
        current = self._store.get_template(set_id, name, normalise_locale(locale))
        restored = Template(set_id=set_id, name=name, locale=current.locale, kind=current.kind, subject=old.subject,
                            html=old.html, text=old.text, variables=old.variables, description=current.description)
        self._check(restored)  # an old version may predate a check (a secret in an image): it is not let back in
        return self._store.save_template(restored, saved_by=subject.user_id, now=self._clock.now())

    def restore_default(self, subject: Subject, set_id: str, name: str, locale: str) -> Template:
        """Bring one built-in template back to what mailroom ships."""
        subject.require(EDIT_TEMPLATES)
        wanted = normalise_locale(locale)
        builtin = self._builtins.get(set_id)
        shipped = next((t for t in builtin.templates if (t.name, t.locale) == (name, wanted)), None) \
            if builtin else None
        if shipped is None:
            raise TemplateNotFound(set_id, name, wanted) if builtin else TemplateSetNotFound(set_id)
        return self._store.save_template(shipped, saved_by=subject.user_id, now=self._clock.now())

    def has_default(self, subject: Subject, set_id: str, name: str, locale: str) -> bool:
        """Whether :meth:`restore_default` can bring this template back (mailroom or the app ships it)."""
        subject.require(READ_TEMPLATES)
        builtin = self._builtins.get(set_id)
        wanted = normalise_locale(locale)
        return builtin is not None and any((t.name, t.locale) == (name, wanted) for t in builtin.templates)

    def ensure_builtin(self) -> int:
        """Create missing built-in sets and templates; an admin's edits are never overwritten."""
        created = 0
        now = self._clock.now()
        for builtin in self._builtins.values():
            try:
                self._store.get_set(builtin.template_set.id)
            except TemplateSetNotFound:
                self._store.save_set(builtin.template_set)
            for template in builtin.templates:
                saved = self._store.save_template(template, saved_by="mailroom", now=now, only_if_missing=True)
                created += saved.version == 1 and saved.updated_at == now
        return created

    def import_set(self, subject: Subject, template_set: TemplateSet, templates: Sequence[Template]) -> int:
        """Create or update a set from files; unchanged templates keep their version. Returns saves made."""
        subject.require(EDIT_TEMPLATES)
        for template in templates:
            if template.set_id != template_set.id:
                raise InvalidInput(f"template {template.name!r} belongs to {template.set_id!r}, not "
                                   f"{template_set.id!r}", field="set_id")
            self._check(template, partials=[t for t in templates if t.kind is TemplateKind.PARTIAL])
        self._store.save_set(template_set)
        existing = {t.key: t for t in self._store.list_templates(template_set.id)}
        saved = 0
        for template in templates:
            current = existing.get(template.key)
            if current is None or not current.same_content(template):
                self._store.save_template(template, saved_by=subject.user_id, now=self._clock.now())
                saved += 1
        return saved

    def export_set(self, subject: Subject, set_id: str) -> tuple[TemplateSet, builtins.list[Template]]:
        subject.require(READ_TEMPLATES)
        return self._store.get_set(set_id), self._store.list_templates(set_id)

    def missing_translations(self, subject: Subject, set_id: str) -> builtins.list[MissingTranslation]:
        """Templates lacking a locale that other templates of the set have."""
        templates = self.list_templates(subject, set_id)
        locales = {t.locale for t in templates}
        have: dict[str, set[str]] = {}
        for t in templates:
            have.setdefault(t.name, set()).add(t.locale)
        return [MissingTranslation(set_id=set_id, name=name, locale=locale)
                for name, present in sorted(have.items()) for locale in sorted(locales - present)]

    # --- rendering and sending ------------------------------------------------------------------

    def preview(self, subject: Subject, set_id: str, name: str, *, language: str | None = None,
                model: Mapping[str, Any] | str | None = None, template: Template | None = None) -> RenderedTemplate:
        """Render subject, HTML and text; ``model`` may be a JSON text. With ``template`` (an unsaved edit),
        that content is rendered with the set's partials; without a model, the declared samples are used.

        Rendering posted content runs template code of the caller's choosing, which is what editing
        allows: it needs EDIT_TEMPLATES. Rendering what is saved needs READ_TEMPLATES only."""
        subject.require(READ_TEMPLATES if template is None else EDIT_TEMPLATES)
        chosen, partials = self._resolve(set_id, name, language) if template is None else (
            template, self._partials(set_id, template.locale))
        data = dict(chosen.variables) if model is None else parse_model(model)
        return self._render(chosen, partials, data)

    def preview_saved(self, subject: Subject, set_id: str, name: str, locale: str) -> RenderedTemplate:
        """Render one stored template or partial, in exactly its locale, with its declared samples."""
        subject.require(READ_TEMPLATES)
        template = self._store.get_template(set_id, name, normalise_locale(locale))
        return self._render(template, self._partials(set_id, template.locale), dict(template.variables))

    def send_template_mail(self, subject: Subject, *, to: AddressesInput, set_id: str, name: str,
                           model: Mapping[str, Any] | str, language: str | None = None, cc: AddressesInput = (),
                           bcc: AddressesInput = (), sender: AddressInput | None = None,
                           reply_to: AddressesInput = (), attachments: Sequence[Attachment] = (),
                           smtp_hint: str | None = None, priority: Priority | str = Priority.NORMAL,
                           tags: Sequence[str] = (), correlation_id: str | None = None,
                           confidential: bool = False,
                           idempotency_key: str | IdempotencyKey | None = None) -> str:
        """Render and queue; returns the mail id. Nothing is queued when anything is wrong. With an
        idempotency key, a repeat within its window returns the first mail's id (see SendMail.queue)."""
        return self.queue_template_mail(
            subject, to=to, set_id=set_id, name=name, model=model, language=language, cc=cc, bcc=bcc,
            sender=sender, reply_to=reply_to, attachments=attachments, smtp_hint=smtp_hint, priority=priority,
            tags=tags, correlation_id=correlation_id, confidential=confidential,
            idempotency_key=idempotency_key).mail_id

    def queue_template_mail(self, subject: Subject, *, to: AddressesInput, set_id: str, name: str,
                            model: Mapping[str, Any] | str, language: str | None = None, cc: AddressesInput = (),
                            bcc: AddressesInput = (), sender: AddressInput | None = None,
                            reply_to: AddressesInput = (), attachments: Sequence[Attachment] = (),
                            smtp_hint: str | None = None, priority: Priority | str = Priority.NORMAL,
                            tags: Sequence[str] = (), correlation_id: str | None = None,
                            confidential: bool = False,
                            idempotency_key: str | IdempotencyKey | None = None) -> Queued:
        """``send_template_mail``, telling also whether this call queued the mail (see Queued)."""
        subject.require(SEND_MAIL)
        data = parse_model(model)
        chosen, partials = self._resolve(set_id, name, language)
        rendered = self._render(chosen, partials, data)
        mail = Mail(to=to, cc=cc, bcc=bcc, sender=sender, reply_to=reply_to, subject=rendered.subject,
                    text=rendered.text, html=rendered.html, attachments=attachments, smtp_hint=smtp_hint,
                    priority=priority, tags=tags, correlation_id=correlation_id, template=rendered.template,
                    locale=rendered.locale, confidential=confidential)
        return self._send.queue(subject, mail, idempotency_key=idempotency_key)

    # --- internals ------------------------------------------------------------------------------

    def _resolve(self, set_id: str, name: str, language: str | None) -> tuple[Template, builtins.list[Template]]:
        template_set = self._store.get_set(set_id)
        candidates = [t for t in self._store.list_templates(set_id)
                      if t.name == name and t.kind is TemplateKind.TEMPLATE]
        if not candidates:
            raise TemplateNotFound(set_id, name)
        locale = self._renderer.choose_locale(language, [t.locale for t in candidates], template_set.default_locale)
        chosen = next(t for t in candidates if t.locale == locale)
        return chosen, self._partials(set_id, locale, default=template_set.default_locale)

    def _partials(self, set_id: str, locale: str, *, default: str | None = None) -> builtins.list[Template]:
        """Each partial of the set in the locale closest to the template's."""
        by_name: dict[str, builtins.list[Template]] = {}
        for t in self._store.list_templates(set_id):
            if t.kind is TemplateKind.PARTIAL:
                by_name.setdefault(t.name, []).append(t)
        if default is None:
            default = self._store.get_set(set_id).default_locale
        chosen = []
        for versions in by_name.values():
            best = self._renderer.choose_locale(locale, [t.locale for t in versions], default)
            chosen.append(next(t for t in versions if t.locale == best))
        return chosen

    def _render(self, template: Template, partials: Sequence[Template], model: dict[str, Any]) -> RenderedTemplate:
        missing = sorted(set(template.variables) - set(model))
        if missing:
            raise InvalidModel("the model for {template} lacks {missing} (it declares: {declared})",
                               {"template": template.qualified_name, "missing": ", ".join(missing),
                                "declared": ", ".join(sorted(template.variables))})
        return self._renderer.render(template, partials, model)

    def _check(self, template: Template, partials: Sequence[Template] | None = None) -> None:
        self._renderer.check(template)
        if partials is None:
            partials = self._partials(template.set_id, template.locale)
        used = self._renderer.variables_used(template, partials)
        self._refuse_exposed_secrets(template, partials, used)
        if template.kind is TemplateKind.PARTIAL:
            return
        undeclared = sorted(used - set(template.variables))
        if undeclared:
            raise InvalidInput("{template} uses undeclared variables: {undeclared}; declare each with a sample value",
                               {"template": template.qualified_name, "undeclared": ", ".join(undeclared)},
                               field="variables")

    def secret_variables(self, template: Template, used: Sequence[str] | set[str] = ()) -> frozenset[str]:
        """The template's own declaration, every secret its shipped set declares (a stored template does
        not keep the declaration, and a partial may be handed any of them), and secret-looking names."""
        builtin = self._builtins.get(template.set_id)
        shipped = {name for t in builtin.templates for name in t.secret_variables} if builtin else set()
        by_name = {name for name in (*template.variables, *used) if is_secret_name(name)}
        return frozenset(template.secret_variables | shipped | by_name)

    def _refuse_exposed_secrets(self, template: Template, partials: Sequence[Template], used: set[str]) -> None:
        exposures = self._renderer.exposed_secrets(template, partials, self.secret_variables(template, used))
        if exposures:
            first = exposures[0]
            raise SecretVariableExposed(f"{template.qualified_name} ({first.part})", first.variable, first.where,
                                        first.line)

def parse_model(model: Mapping[str, Any] | str) -> dict[str, Any]:
    """The model as a dict; a JSON text must hold an object."""
    if isinstance(model, str):
        try:
            model = json.loads(model)
        except json.JSONDecodeError as exc:
            raise InvalidModel("the model is not valid JSON: {reason} at line {line} column {column}",
                               {"reason": exc.msg, "line": exc.lineno, "column": exc.colno}) from None
    if not isinstance(model, Mapping):
        raise InvalidModel("the model must be a JSON object (name: value pairs), not {kind}",
                           {"kind": type(model).__name__})
    return dict(model)
