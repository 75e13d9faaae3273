"""The CLI prints stored text as text: escape sequences are shown, not obeyed, and Rich markup in data is not
interpreted (issue #11, item 9). The domain now refuses such text, so it is written into the store directly,
as an older version of mailroom (or another client of the database) may have left it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import update

from mailroom import SYSTEM, Mail, Mailroom
from mailroom.adapters.storage.tables import mail_recipients, mails

HOSTILE = "Hi \x1b]0;pwned\x07\x1b[2J\x1b[31mred\x9b1m [bold]loud[/bold] \u202eevil\x7f"


def run(tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env |= {"MAILROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
            "MAILROOM_SECRET_KEY_FILE": str(tmp_path / "k"), "PYTHONIOENCODING": "utf-8", "COLUMNS": "400",
            "FORCE_COLOR": "1", "TERM": "xterm-256color"}  # colours on: Rich must still not pass data raw
    result = subprocess.run([sys.executable, "-m", "mailroom.cli", *args], env=env, capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode("utf-8")


def test_log_and_show_print_control_characters_visibly(tmp_path: Path) -> None:
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'm.db'}", secret_key_file=str(tmp_path / "k")) as room:
        mail_id = room.send_mail(SYSTEM, Mail(to="Ann <ann@example.org>", subject="placeholder", text="Hi",
                                              tags=["t1"]))
        with room.database.write() as conn:
            conn.execute(update(mails).where(mails.c.id == mail_id).values(
                subject=HOSTILE, tags=f",{HOSTILE},", last_error=HOSTILE, server_name=HOSTILE))
            conn.execute(update(mail_recipients).where(mail_recipients.c.mail_id == mail_id).values(
                name=HOSTILE, reply=HOSTILE))

    for output in (run(tmp_path, "log"), run(tmp_path, "show", mail_id)):
        # Rich's own styling (colours) uses ESC; the data's ESC must not appear, so no data-made sequence
        # can be at work: "]0;pwned" would retitle the terminal, "[2J" clear it.
        assert "]0;pwned" not in output.replace("\\x1b]0;pwned", "")
        assert "\x1b[2J" not in output and "\x07" not in output and "\x9b" not in output
        assert "\x7f" not in output and "\u202e" not in output
        assert "\\x1b]0;pwned" in output or "\\x1b" in output, output
        assert "[bold]loud[/bold]" in output or "[bold]lou" in output, "markup in data is printed, not applied"
    shown = run(tmp_path, "show", mail_id)
    assert "\\x1b[2J" in shown and "\\x07" in shown and "\\u202e" in shown and "\\x7f" in shown
    assert "[bold]loud[/bold]" in shown


def test_templates_show_and_render_print_control_characters_visibly(tmp_path: Path) -> None:
    from mailroom.adapters.storage.tables import templates

    with Mailroom(database_url=f"sqlite:///{tmp_path / 'm.db'}", secret_key_file=str(tmp_path / "k")) as room, \
            room.database.write() as conn:
        conn.execute(update(templates).where(templates.c.set_id == "mailroom.account",
                                             templates.c.name == "notification", templates.c.locale == "en")
                     .values(text="Hello \x1b[2J\x1b]0;pwned\x07 there"))
    for shown in (run(tmp_path, "templates", "show", "mailroom.account", "notification"),
                  run(tmp_path, "templates", "render", "mailroom.account", "notification", "--language", "en")):
        assert "\x1b[2J" not in shown and "\x07" not in shown and "]0;pwned\x07" not in shown
        assert "\\x1b[2J" in shown, shown
