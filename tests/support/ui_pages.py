"""Every page of the admin UI, with data that fills it: the browser tests for layout, accessibility and
German walk this list, so a page added to the UI belongs here too."""

from __future__ import annotations

from dataclasses import dataclass

from mailroom import SYSTEM, Mail, Mailroom
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
    """A sent mail with a long subject and recipient, a failed one with an SMTP error, a second user."""
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
    server = room.servers.list(SYSTEM)[0]
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
