"""Every page of the admin UI, with data that fills it: the browser tests for layout, accessibility and
German walk this list, so a page added to the UI belongs here too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mailroom import SYSTEM, Mail, Mailroom, ServerSettings
from mailroom.domain.servers import Security
from mailroom.domain.users import Profile
from tests.support.smtp_servers import Behaviour, SmtpServerHandle

LONG_SUBJECT = ("Rechnung 2024-000123 für die Bestellung vom 14. März mit sehr langem Betreff, der in keiner "
                "Tabellenspalte Platz hat und umbrechen muss")
LONG_RECIPIENT = "ein.sehr.langer.empfaengername.fuer.die.buchhaltung@abteilung.beispiel.example.org"


@dataclass(frozen=True)
class Filled:
    sent_mail: str
    failed_mail: str
    server_id: str
    user_id: str


def fill(room: Mailroom, smtp_server: SmtpServerHandle) -> Filled:
    """A sent mail with a long subject and recipient, a failed one with an SMTP error, a cancelled one, a second
    user and a disabled one, a disabled server."""
    sent = room.send_mail(SYSTEM, Mail(to=[LONG_RECIPIENT, "zweite@example.org"], subject=LONG_SUBJECT,
                                       text="Hallo", html="<p>Hallo</p>", tags=["rechnung", "monatlich"]))
    room.deliver_pending()
    smtp_server.behaviour = Behaviour.PERMANENT
    failed = room.send_mail(SYSTEM, Mail(to=["abgelehnt@example.org"], subject="Abgelehnt", text="Hallo"))
    room.deliver_pending()
    smtp_server.behaviour = Behaviour.ACCEPT
    user = room.users.create_user(SYSTEM, Profile(email="betrieb@example.org", first_name="Berta"),
                                  password="a long test passphrase", roles=["mail-operator"], verified=True,
                                  notify_user=False)
    disabled = room.users.create_user(SYSTEM, Profile(email="ehemalig@example.org"), verified=True,
                                      notify_user=False)
    room.users.set_enabled(SYSTEM, disabled.id, False)
    room.servers.add(SYSTEM, ServerSettings(name="reserve", host="127.0.0.1", port=1, security=Security.NONE,
                                            enabled=False))
    later = datetime.now(UTC) + timedelta(days=1)
    room.cancel_mail(SYSTEM, room.send_mail(SYSTEM, Mail(to=["storniert@example.org"], subject="Storniert",
                                                          text="Hallo", send_at=later)))
    server = next(s for s in room.servers.list(SYSTEM) if s.enabled)
    return Filled(sent_mail=sent, failed_mail=failed, server_id=server.id, user_id=user.id)


def admin_pages(filled: Filled) -> dict[str, str]:
    """Name → path of every page an administrator sees."""
    return {
        "overview": "/",
        "test": "/test",
        "log": "/log",
        "log-search": "/log?q=rechnung",
        "mail-sent": f"/log/{filled.sent_mail}",
        "mail-failed": f"/log/{filled.failed_mail}",
        "template-sets": "/templates",
        "template-set": "/templates/mailroom.account",
        "template-editor": "/templates/mailroom.account/password_reset/en",
        "smtp": "/smtp",
        "smtp-new": "/smtp/new",
        "smtp-edit": f"/smtp/{filled.server_id}/edit",
        "users": "/users",
        "roles": "/users/roles",
        "user-new": "/users/new",
        "user": f"/users/{filled.user_id}",
        "account": "/account",
        "not-found": "/log/no-such-mail",
        "no-such-page": "/no/such/page",
    }


ANONYMOUS_PAGES = {
    "login": "/login",
    "register": "/register",
    "forgot-password": "/forgot-password",
    "reset-password": "/reset-password?code=unknown",
    "confirm-email": "/confirm-email?code=unknown",
}
