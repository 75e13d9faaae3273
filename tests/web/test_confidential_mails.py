"""Issue #11, item 1: account mails are confidential, so a mail operator cannot take over the admin.

The attack: anyone asks for a password reset of the admin's address; the reset mail sits in the queue and
then in the log. An operator (``mailroom.mail.read``) must not read its code through any door: the JSON
API, the UI pages, the .eml download, the log search, or the CLI. The worker still delivers it, and the
content is gone once the mail is final.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from mailroom import SYSTEM, Mailroom
from mailroom.adapters.storage.tables import mail_contents
from mailroom.domain.users import Profile
from tests.acceptance.test_cli import Cli
from tests.support.smtp_servers import SmtpServerHandle
from tests.web.conftest import ADMIN, csrf_of


def _content_row(room: Mailroom, mail_id: str) -> bytes | None:
    with room.database.read() as conn:
        found: bytes | None = conn.execute(
            select(mail_contents.c.message).where(mail_contents.c.mail_id == mail_id)).scalar()
        return found


def _only_mail(room: Mailroom, tag: str) -> str:
    page = room.search_mail_log(SYSTEM, tag=tag)
    assert page.total == 1, page
    return page.items[0].id


def _cli_on(room: Mailroom, tmp_path: Path) -> Cli:
    """The ``mailroom`` command on the web app's own database and key file."""
    cli = Cli(tmp_path / "cli")
    cli.tmp_path.mkdir()
    cli.env.update(MAILROOM_DATABASE_URL=room.settings.database_url,
                   MAILROOM_SECRET_KEY_FILE=room.settings.secret_key_file)
    return cli


def _code_in(received_text: str, path: str) -> str:
    found = re.search(rf"http://testserver/{path}\?code=([A-Za-z0-9_-]+)", received_text)
    assert found, received_text
    return found.group(1)


def test_a_mail_operator_cannot_read_the_admins_password_reset_code(
        room: Mailroom, client: TestClient, user_with: Callable[..., TestClient],
        smtp_server: SmtpServerHandle, tmp_path: Path) -> None:
    operator = user_with("mail-operator")
    page = client.get("/forgot-password")
    assert client.post("/forgot-password", data={"email": ADMIN, "csrf_token": csrf_of(page.text)}).status_code == 200
    mail_id = _only_mail(room, "password_reset")

    # Every door, while the mail waits in the queue; the code is learnt from the SMTP sink afterwards.
    seen: dict[str, str] = {}
    for path in (f"/api/v1/mails/{mail_id}", f"/api/v1/mails/{mail_id}/raw", f"/log/{mail_id}",
                 f"/log/{mail_id}/body.html", f"/log/{mail_id}/message.eml", f"/log/{mail_id}/parts/0",
                 f"/log/{mail_id}/parts/1", "/log?q=reset-password", "/log?q=code%3D",
                 "/api/v1/mails?q=reset-password", "/api/v1/mails?text=code%3D"):
        seen[path] = operator.get(path).text

    raw = operator.get(f"/api/v1/mails/{mail_id}/raw")
    assert raw.status_code == 403
    assert raw.json()["code"] == "confidential_content"
    assert f"the content of confidential mail {mail_id!r} is hidden" in raw.json()["message"]
    for path in (f"/log/{mail_id}/body.html", f"/log/{mail_id}/message.eml", f"/log/{mail_id}/parts/0"):
        assert operator.get(path).status_code == 403, path
    detail = operator.get(f"/api/v1/mails/{mail_id}").json()
    assert detail["confidential"] is True
    assert detail["subject"] and detail["recipients"][0]["email"] == ADMIN  # the metadata stays visible
    ui = operator.get(f"/log/{mail_id}")
    assert ui.status_code == 200
    assert "content hidden" in ui.text.lower()
    assert "message.eml" not in ui.text and "body.html" not in ui.text
    listing = operator.get("/log").text  # the log lists it, with its metadata and "content hidden"
    assert mail_id in listing and "content hidden" in listing
    # Words that are only in the body find nothing.
    assert mail_id not in seen["/log?q=reset-password"] and mail_id not in seen["/log?q=code%3D"]
    assert operator.get("/api/v1/mails", params={"q": "reset-password"}).json()["total"] == 0

    cli = _cli_on(room, tmp_path)
    seen["show"] = cli.out("show", mail_id)
    assert "hidden" in seen["show"]
    seen["show --raw"] = cli.err("show", mail_id, "--raw", code=2)
    assert f"the content of confidential mail {mail_id!r} is hidden" in seen["show --raw"]
    seen["log -q"] = cli.out("log", "-q", "reset-password", "--json")
    assert mail_id not in seen["log -q"]

    at_rest = _content_row(room, mail_id)
    assert at_rest is not None

    room.deliver_pending()
    delivered = smtp_server.wait_for(1)[0]
    assert delivered.rcpt_tos == [ADMIN]
    code = _code_in(delivered.message().get_body(("plain",)).get_content(), "reset-password")

    for door, answer in seen.items():
        assert code not in answer, door
    assert code.encode() not in at_rest
    assert b"reset-password" not in at_rest  # none of the body is stored in plain text
    assert room.get_mail(SYSTEM, mail_id).status.value == "sent"
    assert _content_row(room, mail_id) is None  # dropped as soon as the mail was sent
    assert room.get_mail(SYSTEM, mail_id).has_content is False
    quoted = f'"{code}"'  # a code may start with "-", which unquoted would mean "not containing"
    assert mail_id not in cli.out("log", "-q", quoted, "--json")
    assert operator.get("/api/v1/mails", params={"q": quoted}).json()["total"] == 0
    assert mail_id not in operator.get("/log", params={"q": quoted}).text
    assert operator.get(f"/api/v1/mails/{mail_id}/raw").status_code == 403

    # The code still works for the one who got the mail.
    form = client.get(f"/reset-password?code={code}")
    assert form.status_code == 200


def test_verification_mails_are_confidential_too(room: Mailroom, user_with: Callable[..., TestClient],
                                                 smtp_server: SmtpServerHandle) -> None:
    operator = user_with("mail-operator")
    room.users.create_user(SYSTEM, Profile(email="new@example.org"), password="a long test passphrase")
    mail_id = _only_mail(room, "email_verification")
    answers = [operator.get(path).text for path in (
        f"/api/v1/mails/{mail_id}/raw", f"/log/{mail_id}", f"/log/{mail_id}/body.html",
        f"/log/{mail_id}/message.eml")]
    assert operator.get(f"/api/v1/mails/{mail_id}/raw").status_code == 403
    at_rest = _content_row(room, mail_id)
    assert at_rest is not None

    room.deliver_pending()
    code = _code_in(smtp_server.wait_for(1)[0].message().get_body(("plain",)).get_content(), "confirm-email")
    assert all(code not in answer for answer in answers)
    assert code.encode() not in at_rest
    assert _content_row(room, mail_id) is None


def test_an_ordinary_mail_stays_readable(room: Mailroom, admin: TestClient) -> None:
    mail_id = admin.post("/api/v1/mails", json={"to": ["a@example.org"], "subject": "hi",
                                                "text": "plain words"}).json()["id"]
    assert b"plain words" in admin.get(f"/api/v1/mails/{mail_id}/raw").content
    assert admin.get(f"/api/v1/mails/{mail_id}").json()["confidential"] is False


def test_any_mail_can_be_sent_confidential_from_the_cli(room: Mailroom, tmp_path: Path) -> None:
    cli = _cli_on(room, tmp_path)
    mail_id = cli.out("send", "--to", "a@example.org", "--subject", "your pin", "--text", "pin 4711",
                      "--confidential").strip()
    assert "confidential mail" in cli.err("show", mail_id, "--raw", code=2)
    assert room.get_mail(SYSTEM, mail_id).confidential
    stored = _content_row(room, mail_id)
    assert stored is not None and b"4711" not in stored
