"""``mailroom templates``: list, show, render, send, export, import and restore mail templates."""

from pathlib import Path
from typing import Annotated

import typer

from mailroom.cli import output
from mailroom.cli.context import command_group, mailroom
from mailroom.cli.errors import UsageProblem
from mailroom.cli.mail import check_smtp_hint, read_text
from mailroom.cli.output import Column
from mailroom.domain.permissions import SYSTEM

templates_app = command_group("Manage mail templates (sets of templates per locale).")

SetArgument = Annotated[str, typer.Argument(metavar="SET", help="The template set's id, e.g. mailroom.account.")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The template's name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WantedLocale = Annotated[str | None, typer.Option("--locale", "-l", help="Wanted locale, e.g. de or de_CH; the "
                                                  "closest available one is used.")]
# The name render and send had before `show` and `restore` settled it: still accepted, no longer shown.
LanguageAlias = Annotated[str | None, typer.Option("--language", hidden=True, help="Same as --locale.")]
ExactLocale = Annotated[str, typer.Option("--locale", "-l", help="The locale, e.g. en or de_CH.")]
ModelOption = Annotated[str | None, typer.Option("--model", help="The model as a JSON object.")]
ModelFile = Annotated[Path | None, typer.Option("--model-file", help="Read the JSON model from a file ('-' for "
                                                "stdin).", dir_okay=False)]


def wanted_locale(locale: str | None, language: str | None) -> str | None:
    if locale is not None and language is not None:
        raise UsageProblem("give the locale once, with --locale (--language is its old name)")
    return locale if locale is not None else language


def model_text(model: str | None, model_file: Path | None) -> str | None:
    if model is not None and model_file is not None:
        raise UsageProblem("give the model with --model or --model-file, not both")
    return read_text(model_file, "--model-file") if model_file is not None else model


# Set ids and template names are typed in other commands: never cut, never wrapped.
SET_COLUMNS = (Column("id"), Column("name", share=1), Column("default locale", rank=1),
               Column("tags", rank=3, share=1, min_width=8), Column("description", rank=2, share=3, min_width=16))
TEMPLATE_COLUMNS = (Column("name"), Column("kind", rank=2), Column("locale"), Column("version", justify="right"),
                    Column("updated at", rank=3), Column("by", rank=4, share=1, min_width=8),
                    Column("subject", rank=1, share=3, min_width=16))
VERSION_COLUMNS = (Column("version", justify="right"), Column("saved at"), Column("by", rank=2, share=1),
                   Column("subject", rank=1, share=3, min_width=16))


@templates_app.command("list")
def list_(ctx: typer.Context, set_id: Annotated[str | None, typer.Argument(metavar="SET",
                                                                             help="List this set's templates.")] = None,
          as_json: JsonOption = False) -> None:
    """List template sets, or the templates of one set with the translations they lack."""
    room = mailroom(ctx)
    if set_id is None:
        sets = room.templates.list_sets(SYSTEM)
        if as_json:
            output.print_json(sets)
            return
        output.print_rows("Template sets", SET_COLUMNS, [
            (output.text(s.id), output.text(s.name), output.text(s.default_locale), output.text(", ".join(s.tags)),
             output.text(s.description)) for s in sets])
        return
    templates = room.templates.list_templates(SYSTEM, set_id)
    missing = room.templates.missing_translations(SYSTEM, set_id)
    if as_json:
        output.print_json({"templates": [_summary(t) for t in templates], "missing_translations": missing})
        return
    rows = [(output.text(t.name), output.text(t.kind), output.text(t.locale), output.text(t.version),
             output.text(output.when(t.updated_at, short=True)), output.text(t.updated_by), output.text(t.subject))
            for t in templates]
    missing_text = ", ".join(f"{m.name} ({m.locale})" for m in missing)
    output.print_rows(f"Templates of {output.printable(set_id)}", TEMPLATE_COLUMNS, rows,
                      f"missing translations: {missing_text}" if missing else "")


def _summary(template: object) -> dict[str, object]:
    data: dict[str, object] = output.to_jsonable(template)
    for part in ("html", "text"):
        data.pop(part, None)
    return data


@templates_app.command("show")
def show(ctx: typer.Context, set_id: SetArgument, name: NameArgument,
         locale: ExactLocale = "en",
         versions: Annotated[bool, typer.Option("--versions", help="List the saved versions.")] = False,
         diff: Annotated[tuple[int, int] | None, typer.Option("--diff", metavar="OLD NEW",
                                                              help="Show what changed between two versions.")] = None,
         as_json: JsonOption = False) -> None:
    """Show one template: subject, bodies and declared variables; or its versions, or a diff."""
    room = mailroom(ctx)
    if diff is not None:
        typer.echo(output.printable(room.templates.diff(SYSTEM, set_id, name, locale, diff[0], diff[1])), nl=False)
        return
    if versions:
        found = room.templates.versions(SYSTEM, set_id, name, locale)
        if as_json:
            output.print_json(found)
            return
        output.print_rows(output.printable(f"Versions of {set_id}/{name}.{locale}"), VERSION_COLUMNS, [
            (output.text(v.version), output.text(output.when(v.saved_at)), output.text(v.saved_by),
             output.text(v.subject)) for v in found])
        return
    template = room.templates.get_template(SYSTEM, set_id, name, locale)
    if as_json:
        output.print_json(template)
        return
    typer.echo(f"{template.qualified_name} ({template.kind}, version {template.version})")
    typer.echo(f"subject: {output.printable(template.subject)}")
    typer.echo("variables: " + output.printable(", ".join(f"{k}={v!r}" for k, v in sorted(template.variables.items()))))
    for label, body in (("html", template.html), ("text", template.text)):
        if body is not None:
            typer.echo(f"--- {label} ---\n{output.printable(body)}")


@templates_app.command("render")
def render(ctx: typer.Context, set_id: SetArgument, name: NameArgument, locale: WantedLocale = None,
           model: ModelOption = None, model_file: ModelFile = None, as_json: JsonOption = False,
           language: LanguageAlias = None) -> None:
    """Render a preview: subject, HTML and text (with the declared sample values when no model is given)."""
    rendered = mailroom(ctx).templates.preview(SYSTEM, set_id, name, language=wanted_locale(locale, language),
                                               model=model_text(model, model_file))
    if as_json:
        output.print_json(rendered)
        return
    # Printed as text: a template (or a model value) may hold escape sequences meant for the terminal.
    typer.echo(f"locale: {rendered.locale}\nsubject: {output.printable(rendered.subject)}")
    if rendered.html is not None:
        typer.echo(f"--- html ---\n{output.printable(rendered.html)}")
    typer.echo(f"--- text ---\n{output.printable(rendered.text)}")


@templates_app.command("send")
def send(ctx: typer.Context, set_id: SetArgument, name: NameArgument,
         to: Annotated[list[str], typer.Option("--to", help="Recipient; repeat for more.")],
         locale: WantedLocale = None, model: ModelOption = None, model_file: ModelFile = None,
         cc: Annotated[list[str] | None, typer.Option("--cc", help="Cc recipient.")] = None,
         bcc: Annotated[list[str] | None, typer.Option("--bcc", help="Bcc recipient.")] = None,
         smtp_hint: Annotated[str | None, typer.Option("--smtp-hint", help="SMTP server to try first.")] = None,
         as_json: JsonOption = False, language: LanguageAlias = None) -> None:
    """Render a template with a JSON model and queue it; prints the mail id."""
    text = model_text(model, model_file)
    if text is None:
        raise UsageProblem("give the model with --model '{...}' or --model-file FILE")
    room = mailroom(ctx)
    check_smtp_hint(room, smtp_hint)
    mail_id = room.send_template_mail(SYSTEM, to=to, cc=cc or [], bcc=bcc or [], set_id=set_id, name=name,
                                      language=wanted_locale(locale, language), model=text, smtp_hint=smtp_hint)
    if as_json:
        output.print_json({"id": mail_id})
    else:
        typer.echo(mail_id)


@templates_app.command("export")
def export(ctx: typer.Context, set_id: SetArgument,
           out: Annotated[Path | None, typer.Option("--out", "-o", help="A folder, or a file ending in .zip "
                                                    "(default: a folder named after the set).")] = None) -> None:
    """Write a set to files, to keep it in git or move it to another installation."""
    from mailroom.adapters.templates.folder import write_folder, write_zip

    template_set, templates = mailroom(ctx).templates.export_set(SYSTEM, set_id)
    target = out or Path(set_id)
    if target.suffix == ".zip":
        target.write_bytes(write_zip(template_set, templates))
    else:
        write_folder(template_set, templates, target)
    typer.echo(f"exported {len(templates)} template(s) of {set_id} to {target}")


@templates_app.command("import")
def import_(ctx: typer.Context,
            source: Annotated[Path, typer.Argument(metavar="PATH", help="A set folder or a .zip.", exists=True)]
            ) -> None:
    """Create or update a set from files; every changed template gets a new version."""
    from mailroom.adapters.templates.folder import read_folder, read_zip

    if source.is_dir():
        template_set, templates = read_folder(source)
    else:
        template_set, templates = read_zip(source.read_bytes())
    saved = mailroom(ctx).templates.import_set(SYSTEM, template_set, templates)
    typer.echo(f"imported {template_set.id}: {saved} of {len(templates)} template(s) changed")


@templates_app.command("restore")
def restore(ctx: typer.Context, set_id: SetArgument, name: NameArgument,
            locale: ExactLocale = "en",
            version: Annotated[int | None, typer.Option("--version", help="Restore this saved version instead of "
                                                        "the built-in default.")] = None) -> None:
    """Bring a built-in template back to its default, or any template back to a saved version."""
    templates = mailroom(ctx).templates
    if version is None:
        restored = templates.restore_default(SYSTEM, set_id, name, locale)
    else:
        restored = templates.restore_version(SYSTEM, set_id, name, locale, version)
    typer.echo(f"{restored.qualified_name} restored as version {restored.version}")
