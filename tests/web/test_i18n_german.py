"""German everywhere: every page and every error a person can meet, read by a German user, holds no English
sentence. Core errors carry a message id (their English template) and params; the web edge translates them
through the gettext catalogs."""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import mailroom
from mailroom import SYSTEM, Mail, Mailroom
from mailroom.domain.users import Profile
from mailroom.errors import InvalidAddress, InvalidTransition, Text, WeakPassword
from mailroom.web import i18n
from tests.support.smtp_servers import Behaviour, SmtpServerHandle
from tests.support.ui_pages import ANONYMOUS_PAGES, Filled, admin_pages, fill
from tests.web.conftest import ADMIN, PASSWORD, csrf_of, log_in

GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}

# Words of English sentences that German UI text does not use (German homographs such as "an", "in", "was",
# "will", "so", "man" and "die" are left out). Matched case-sensitively as whole words.
ENGLISH = re.compile(r"\b(the|The|and|with|cannot|Cannot|is|are|of|to|for|this|This|that|your|Your|has|have|"
                     r"be|or|it|must|may|only|there|can|no|No|not|any|Any|yet|from|by|at|use|Use|invalid|"
                     r"unknown|needs|lacks|found|page|error|Page|Error|Found|Not|Log in|Back|Retry|Cancel|"
                     r"Delete|Save|Send|Search|Preview|enabled|disabled|never|queued|sent|failed|deferred|"
                     r"cancelled|sending|high|low|got|Expected|expected|unexpected|expression|undefined)\b")

# What the admin or the application wrote is data, not UI text: addresses, the English templates of the
# built-in set (their subjects and bodies), identifiers.
DATA = re.compile(r"\b[245]\d\d\b.*|\b[245]\.\d+\.\d+\b.*"  # an SMTP server's reply, quoted as it came
                  r"|[\w.+-]+@[\w.-]+|\b[\w]+(?:[._-][\w]+)+\b|\{\{[^}]*\}\}"
                  r"|-?\b\w+:\S*"  # the log search's syntax: to:ann, -status:sent
                  r"|'[^']*'"  # a value the user gave, quoted back
                  r"|\b(?:queued|sending|deferred|sent|failed|cancelled)(?:, (?:queued|sending|deferred|sent|"
                  r"failed|partially_failed|cancelled))+")  # the statuses the search syntax takes, listed


class _VisibleText(HTMLParser):
    """The text a person sees or hears: text nodes and the attributes that are read out or shown, without
    scripts, styles, code samples and what users typed into fields."""

    SKIP = {"script", "style", "textarea", "code", "pre", "option"}
    SPOKEN = ("placeholder", "aria-label", "title", "alt", "data-confirm")

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in self.SKIP:
            self._skipping.append(tag)
        if "data-untranslated" in values:  # template data (an English mail's subject) shown as is
            self._skipping.append(tag)
        self.parts.extend(value for name, value in attrs if name in self.SPOKEN and value)
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self.parts.append(values["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self._skipping and data.strip():
            self.parts.append(data.strip())


def english_leftovers(html: str, data: tuple[str, ...] = ()) -> list[str]:
    parser = _VisibleText()
    parser.feed(html)
    found = []
    for part in parser.parts:
        for known in data:
            part = part.replace(known, "")
        cleaned = DATA.sub("", part)
        if ENGLISH.search(cleaned):
            found.append(part)
    return found


@pytest.fixture
def filled(room: Mailroom, smtp_server: SmtpServerHandle) -> Filled:
    return fill(room, smtp_server)


@pytest.fixture
def german(app: object, room: Mailroom, filled: Filled) -> TestClient:
    """The administrator, who chose German on the account page, in an English browser."""
    client = TestClient(app)  # type: ignore[arg-type]
    log_in(client, ADMIN)
    page = client.get("/account")
    client.post("/account/language", data={"language": "de", "csrf_token": csrf_of(page.text)})
    return client


def english_data(room: Mailroom) -> tuple[str, ...]:
    """The English built-in templates' own words (subjects, sample values) as the set page lists them."""
    found: list[str] = []
    for template in room.templates.list_templates(SYSTEM, "mailroom.account"):
        if template.locale == "en":
            found.append(template.subject)
            found.append(re.sub(r"\{\{\s*application_name\s*\}\}", room.settings.application_name,
                                template.subject))
    return tuple(found)


def test_every_page_is_german(german: TestClient, client: TestClient, filled: Filled, room: Mailroom) -> None:
    data = english_data(room)
    leftovers: dict[str, list[str]] = {}
    for name, path in admin_pages(filled).items():
        page = german.get(path)
        assert page.status_code in (200, 404), (name, page.status_code)
        if found := english_leftovers(page.text, data):
            leftovers[name] = found
    for name, path in ANONYMOUS_PAGES.items():
        if found := english_leftovers(client.get(path, headers=GERMAN).text, data):
            leftovers[name] = found
    assert not leftovers, "English left:\n" + "\n".join(f"{name}: {found}" for name, found in leftovers.items())


SEARCH_ERRORS = ('nosuch:thing', '"unclosed', 'status:nope', 'after:yesterday', 'before:99999-01-01', 'to:',
                 "x " * 40)


def test_every_error_is_german(german: TestClient, client: TestClient, filled: Filled, room: Mailroom,
                               smtp_server: SmtpServerHandle) -> None:
    token = german.headers["X-CSRF-Token"]
    answers: dict[str, str] = {}
    for query in SEARCH_ERRORS:
        answers[f"search {query[:12]}"] = german.get("/log", params={"q": query}).text
    answers["mail not found"] = german.get("/log/nosuchmail").text
    answers["no page"] = german.get("/no/such/page").text
    answers["page=abc"] = german.get("/log", params={"page": "abc"}).text
    answers["retry a sent mail"] = german.post(f"/log/{filled.sent_mail}/retry", data={"csrf_token": token}).text
    answers["test: bad address"] = german.post("/test/send", data={"to": "not an address", "subject": "x",
                                                                   "message": "x", "csrf_token": token}).text
    answers["test: no recipient"] = german.post("/test/send", data={"to": "", "subject": "x", "message": "x",
                                                                    "csrf_token": token}).text
    answers["template: missing variable"] = german.post("/test/template", data={
        "to": "ann@example.org", "set_id": "mailroom.account", "name": "password_reset", "language": "de",
        "model": "{}", "action": "preview", "csrf_token": token}).text
    answers["template: bad model"] = german.post("/test/template", data={
        "to": "ann@example.org", "set_id": "mailroom.account", "name": "password_reset", "language": "de",
        "model": "[1, 2]", "action": "preview", "csrf_token": token}).text
    editor = "/templates/mailroom.account/notification/de"
    answers["editor: syntax"] = german.post(editor, data={
        "subject": "Hallo", "html": "{% if %}", "text": "x", "variables": "{}", "csrf_token": token}).text
    answers["editor: undeclared"] = german.post(editor, data={
        "subject": "Hallo {{ nirgends }}", "html": "", "text": "x", "variables": "{}", "csrf_token": token}).text
    answers["users: duplicate"] = german.post("/users", data={"email": ADMIN, "csrf_token": token}).text
    answers["users: bad address"] = german.post("/users", data={"email": "kein adresse", "csrf_token": token}).text
    answers["account: wrong password"] = german.post("/account/password", data={
        "current_password": "wrong", "new_password": "a long new passphrase", "csrf_token": token}).text
    answers["account: weak password"] = german.post("/account/password", data={
        "current_password": PASSWORD, "new_password": "kurz", "csrf_token": token}).text
    answers["smtp test: refused"] = german.post(f"/smtp/{closed_server(room)}/test", data={"csrf_token": token}).text
    answers["smtp test: ok"] = german.post(f"/smtp/{filled.server_id}/test", data={"csrf_token": token}).text
    answers["smtp: bad port"] = german.post("/smtp", data={"name": "x", "host": "h", "port": "0",
                                                           "security": "none", "csrf_token": token}).text
    register = client.get("/register", headers=GERMAN)
    answers["register: weak"] = client.post("/register", headers=GERMAN, data={
        "email": "neu@example.org", "password": "kurz", "csrf_token": csrf_of(register.text)}).text
    answers["reset: unknown code"] = client.get("/reset-password?code=unknown", headers=GERMAN).text
    operator = room.users.create_user(SYSTEM, Profile(email="op@example.org", preferred_language="de"),
                                      password=PASSWORD, roles=["mail-operator"], verified=True, notify_user=False)
    with TestClient(german.app) as other:
        log_in(other, operator.email)
        answers["403"] = other.get("/users").text

    data = english_data(room)
    leftovers = {name: found for name, html in answers.items() if (found := english_leftovers(html, data))}
    assert not leftovers, "English left:\n" + "\n".join(f"{name}: {found}" for name, found in leftovers.items())


def closed_server(room: Mailroom) -> str:
    from mailroom import ServerSettings
    from mailroom.domain.servers import Security

    return room.servers.add(SYSTEM, ServerSettings(name="geschlossen", host="127.0.0.1", port=9,
                                                   security=Security.NONE, enabled=False)).id


def test_core_messages_keep_their_english_and_translate_with_their_params() -> None:
    error = WeakPassword(12)
    assert str(error) == "the password is too short: use at least 12 characters"
    assert error.text == Text("the password is too short: use at least {minimum} characters", {"minimum": 12})
    i18n.activate("de")
    try:
        assert i18n.error_text(error) == "Das Passwort ist zu kurz: Verwenden Sie mindestens 12 Zeichen."
        nested = InvalidAddress("x", Text("the {label} is not allowed: {problem}", {"label": "address",
                                                                                    "problem": "x"}))
        assert i18n.error_text(nested).startswith("Ungültige E-Mail-Adresse 'x': ")
        transition = InvalidTransition("m1", "sent", "retry", "failed, cancelled or deferred mails", "retried")
        assert str(transition).startswith("cannot retry mail 'm1': it is sent")
        assert "gesendet" in i18n.error_text(transition)
    finally:
        i18n.activate("en")


def test_a_translation_that_does_not_fit_its_params_falls_back_to_english() -> None:
    broken = Text("{a} and {b}", {"a": 1, "b": 2})
    assert broken.render(lambda template: "{a} und {c}") == "1 and 2"


def test_a_mails_stored_last_error_reads_in_the_readers_language(german: TestClient, filled: Filled,
                                                                 room: Mailroom) -> None:
    """The error is stored with the mail as its template and values: a German reader sees it in German, the
    API and an English reader in English (#13 item 7: stored last errors stayed English)."""
    failed = german.get(f"/log/{filled.failed_mail}").text
    assert "Nachricht abgelehnt: 550" in failed and "message refused" not in failed
    assert "Nachricht abgelehnt: 550" in german.get("/log").text
    stored = room.get_mail(SYSTEM, filled.failed_mail)
    assert stored.last_error is not None and "message refused: 550" in stored.last_error

    for server in room.servers.list(SYSTEM):
        room.servers.remove(SYSTEM, server.id)
    waiting = room.send_mail(SYSTEM, Mail(to="wartet@example.org", subject="Wartet", text="Hallo"))
    page = german.get(f"/log/{waiting}").text
    assert "Es ist kein aktiver SMTP-Server eingerichtet" in page and "no enabled SMTP server" not in page


def test_an_attempt_in_mailrooms_own_words_reads_in_the_readers_language(
        german: TestClient, filled: Filled, room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    """A connection dropped after DATA has no reply of the server's: the attempt row says so in mailroom's
    words, which a German reader reads in German (the server's own replies stay as they came)."""
    smtp_server.behaviour = Behaviour.DROP
    dropped = room.send_mail(SYSTEM, Mail(to="abbruch@example.org", subject="Abbruch", text="Hallo"))
    room.deliver_pending()
    smtp_server.behaviour = Behaviour.ACCEPT
    [attempt] = room.get_mail(SYSTEM, dropped).attempt_log
    assert attempt.code is None and attempt.reply is not None and "connection dropped" in attempt.reply
    page = german.get(f"/log/{dropped}").text
    assert page.count("Verbindung abgebrochen") >= 2  # the last error and the attempt's row
    assert "connection dropped" not in page


def test_every_delivery_message_has_its_german() -> None:
    """Each template a mail's last error can be made of (what the SMTP session, the verdict, DeliverMail, the
    worker and the rate limits write) has an entry in the German catalog, found by reading their source."""
    from mailroom.domain import delivery

    catalog = i18n.translations("de")._catalog  # type: ignore[attr-defined]
    sources = ["domain/delivery.py", "usecases/deliver_mail.py", "worker.py", "adapters/smtp/transport.py",
               "domain/rate_limits.py", "errors.py"]
    templates: set[str] = set(delivery._SUMMARIES.values())
    root = Path(mailroom.__file__).parent
    for source in sources:
        for node in ast.walk(ast.parse((root / source).read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                continue
            function = node.func
            name = function.id if isinstance(function, ast.Name) else \
                function.attr if isinstance(function, ast.Attribute) else None
            if name == "Text" or (name == "__init__" and source == "errors.py"):
                templates.add(node.args[0].value)
            elif name == "_message":  # AiosmtplibSession._message: "{server}: <what>: {reason}"
                templates.add("{server}: " + node.args[0].value + ": {reason}")
    assert len(templates) > 40
    missing = sorted(t for t in templates if t and t not in catalog)
    assert not missing, "no German for:\n" + "\n".join(missing)
