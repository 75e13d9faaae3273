"""Template sets and templates in the database; every save also writes the version row it becomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, delete, insert, select, update

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import template_sets, template_versions, templates
from mailroom.domain.templates import Template, TemplateKind, TemplateSet, TemplateVersion
from mailroom.errors import TemplateNotFound, TemplateSetNotFound


class SqlTemplateStore:
    """Implements the ``TemplateStore`` port."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def list_sets(self) -> list[TemplateSet]:
        with self._db.read() as conn:
            rows = conn.execute(select(template_sets).order_by(template_sets.c.id)).all()
        return [_to_set(row) for row in rows]

    def get_set(self, set_id: str) -> TemplateSet:
        with self._db.read() as conn:
            row = conn.execute(select(template_sets).where(template_sets.c.id == set_id)).first()
        if row is None:
            raise TemplateSetNotFound(set_id)
        return _to_set(row)

    def save_set(self, template_set: TemplateSet) -> None:
        now = datetime.now(UTC)
        values = {"name": template_set.name, "description": template_set.description,
                  "tags": ",".join(template_set.tags), "default_locale": template_set.default_locale,
                  "updated_at": now}
        with self._db.write() as conn:
            changed = conn.execute(update(template_sets).where(template_sets.c.id == template_set.id)
                                   .values(**values)).rowcount
            if not changed:
                conn.execute(insert(template_sets).values(id=template_set.id, created_at=now, **values))

    def delete_set(self, set_id: str) -> None:
        with self._db.write() as conn:
            conn.execute(delete(template_versions).where(template_versions.c.set_id == set_id))
            conn.execute(delete(templates).where(templates.c.set_id == set_id))
            if not conn.execute(delete(template_sets).where(template_sets.c.id == set_id)).rowcount:
                raise TemplateSetNotFound(set_id)

    def list_templates(self, set_id: str) -> list[Template]:
        with self._db.read() as conn:
            rows = conn.execute(select(templates).where(templates.c.set_id == set_id)
                                .order_by(templates.c.kind.desc(), templates.c.name, templates.c.locale)).all()
        return [_to_template(row) for row in rows]

    def get_template(self, set_id: str, name: str, locale: str) -> Template:
        with self._db.read() as conn:
            row = conn.execute(select(templates).where(
                templates.c.set_id == set_id, templates.c.name == name, templates.c.locale == locale)).first()
        if row is None:
            raise TemplateNotFound(set_id, name, locale)
        return _to_template(row)

    def save_template(self, template: Template, *, saved_by: str | None, now: datetime,
                      only_if_missing: bool = False) -> Template:
        where = (templates.c.set_id == template.set_id, templates.c.name == template.name,
                 templates.c.locale == template.locale)
        with self._db.write() as conn:
            if conn.execute(select(template_sets.c.id).where(template_sets.c.id == template.set_id)).first() is None:
                raise TemplateSetNotFound(template.set_id)
            current = conn.execute(select(templates).where(*where)).first()
            if current is not None and only_if_missing:
                return _to_template(current)
            version = (current.version + 1) if current is not None else 1
            content = {"kind": template.kind.value, "subject": template.subject, "html": template.html,
                       "text": template.text, "description": template.description,
                       "variables": json.dumps(dict(template.variables), ensure_ascii=False, sort_keys=True)}
            if current is None:
                conn.execute(insert(templates).values(set_id=template.set_id, name=template.name,
                                                      locale=template.locale, version=version, updated_at=now,
                                                      updated_by=saved_by, **content))
            else:
                conn.execute(update(templates).where(*where).values(version=version, updated_at=now,
                                                                    updated_by=saved_by, **content))
            conn.execute(insert(template_versions).values(
                set_id=template.set_id, name=template.name, locale=template.locale, version=version,
                subject=template.subject, html=template.html, text=template.text,
                description=template.description, variables=content["variables"], saved_at=now, saved_by=saved_by))
            row = conn.execute(select(templates).where(*where)).one()
        return _to_template(row)

    def delete_template(self, set_id: str, name: str, locale: str | None) -> int:
        conditions = [templates.c.set_id == set_id, templates.c.name == name]
        version_conditions = [template_versions.c.set_id == set_id, template_versions.c.name == name]
        if locale is not None:
            conditions.append(templates.c.locale == locale)
            version_conditions.append(template_versions.c.locale == locale)
        with self._db.write() as conn:
            conn.execute(delete(template_versions).where(*version_conditions))
            return int(conn.execute(delete(templates).where(*conditions)).rowcount)

    def versions(self, set_id: str, name: str, locale: str) -> list[TemplateVersion]:
        with self._db.read() as conn:
            rows = conn.execute(select(template_versions).where(
                template_versions.c.set_id == set_id, template_versions.c.name == name,
                template_versions.c.locale == locale).order_by(template_versions.c.version.desc())).all()
        if not rows:
            raise TemplateNotFound(set_id, name, locale)
        return [TemplateVersion(version=r.version, subject=r.subject, html=r.html, text=r.text,
                                variables=json.loads(r.variables), saved_at=r.saved_at, saved_by=r.saved_by)
                for r in rows]


def _to_set(row: Row[Any]) -> TemplateSet:
    return TemplateSet(id=row.id, name=row.name, description=row.description,
                       tags=tuple(t for t in row.tags.split(",") if t), default_locale=row.default_locale)


def _to_template(row: Row[Any]) -> Template:
    return Template(set_id=row.set_id, name=row.name, locale=row.locale, kind=TemplateKind(row.kind),
                    subject=row.subject, html=row.html, text=row.text, description=row.description,
                    variables=json.loads(row.variables), version=row.version, updated_at=row.updated_at,
                    updated_by=row.updated_by)
