"""Admin UI: login, logout, self-registration, e-mail confirmation, forgotten password, own account.

Links in mails open a page with a button instead of acting on GET: mail scanners that pre-fetch links
must not use up a code.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Annotated, Any

from cryptography.fernet import Fernet, InvalidToken
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from mailroom.domain.users import Profile
from mailroom.errors import (
    AccountLocked,
    AuthenticationFailed,
    EmailNotVerified,
    InvalidInput,
    RateLimited,
    RegistrationClosed,
)
from mailroom.web import i18n
from mailroom.web.context import client_address, csrf_form, current, login, room, web_session, web_state
from mailroom.web.i18n import error_text
from mailroom.web.i18n import gettext as _
from mailroom.web.pages import render, see_other

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form()]
OptionalText = Annotated[str, Form()]


def field(name: str, label: str, kind: str = "text", value: str = "", autocomplete: str = "",
          required: bool = True) -> dict[str, Any]:
    return {"name": name, "label": label, "type": kind, "value": value, "autocomplete": autocomplete,
            "required": required}


def form_page(request: Request, heading: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    values: dict[str, Any] = {"notice": None, "error": None, "intro": None, "fields": [], "submit": "",
                              "hidden": {}, "links": []} | context
    return render(request, "account_form.html", status_code=status_code, heading=heading, **values)


def safe_next(target: str | None) -> str:
    """Only paths inside this app: an open redirect would let a phishing link borrow our login page."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(request: Request, *, next_path: str = "/", email: str = "", error: str | None = None,
               notice: str | None = None, status_code: int = 200) -> HTMLResponse:
    links = [{"href": "/forgot-password", "label": _("Forgot your password?")}]
    if room(request).users.policy.self_registration:
        links.append({"href": "/register", "label": _("Create an account")})
    return form_page(request, _("Log in"), status_code=status_code, error=error, notice=notice,
                     fields=[field("email", _("E-mail address"), "email", email, "username"),
                             field("password", _("Password"), "password", autocomplete="current-password")],
                     submit=_("Log in"), hidden={"next": safe_next(next_path)}, links=links)


@router.get("/login", response_class=HTMLResponse)
def show_login(request: Request, next: str = "/", done: str = "") -> Response:
    if current(request) is not None:
        return see_other(request, safe_next(next))
    notices = {"reset": _("Your password was changed. Log in with the new one."),
               "confirmed": _("Your e-mail address is confirmed. You can log in now."),
               "logout": _("You are logged out.")}
    return login_page(request, next_path=next, notice=notices.get(done))


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def do_login(request: Request, email: Text, password: Text, next: Annotated[str, Form()] = "/",
             ) -> Response:
    try:
        session = room(request).users.log_in(email, password, client=client_address(request))
    except AccountLocked as exc:
        return login_page(request, next_path=next, email=email, status_code=429,
                          error=_("Too many failed logins. Try again in {seconds} seconds.").format(
                              seconds=max(1, round(exc.retry_after_seconds))))
    except AuthenticationFailed as exc:
        message = _("Confirm your e-mail address first: follow the link in the confirmation mail if you got one. "
                    "If not, ask an administrator to mark your address verified or to send a new link.") \
            if isinstance(exc, EmailNotVerified) else _("Wrong e-mail address or password.")
        return login_page(request, next_path=next, email=email, error=message, status_code=401)
    assert session.key is not None  # log_in always starts one
    web_session(request).log_in(session.key)
    return see_other(request, safe_next(next))


@router.post("/logout", dependencies=[Depends(csrf_form)])
def do_logout(request: Request) -> Response:
    key = web_session(request).log_out()
    if key:
        room(request).users.log_out(key)  # on the server: a copy of the cookie stops working too
    return see_other(request, "/login?done=logout")


def too_many(request: Request, heading: str, exc: RateLimited) -> HTMLResponse:
    return form_page(request, heading, status_code=429, links=[{"href": "/login", "label": _("Log in")}],
                     error=_("Too many requests. Try again in {seconds} seconds.").format(
                         seconds=max(1, round(exc.retry_after_seconds))))


def register_page(request: Request, *, error: str | None = None, values: dict[str, str] | None = None,
                  status_code: int = 200) -> HTMLResponse:
    v = values or {}
    return form_page(request, _("Create an account"), status_code=status_code, error=error,
                     fields=[field("email", _("E-mail address"), "email", v.get("email", ""), "email"),
                             field("first_name", _("First name"), value=v.get("first_name", ""),
                                   autocomplete="given-name", required=False),
                             field("last_name", _("Last name"), value=v.get("last_name", ""),
                                   autocomplete="family-name", required=False),
                             field("password", _("Password"), "password", autocomplete="new-password")],
                     submit=_("Create account"), links=[{"href": "/login", "label": _("Log in")}])


@router.get("/register", response_class=HTMLResponse)
def show_register(request: Request) -> HTMLResponse:
    if not room(request).users.policy.self_registration:
        raise RegistrationClosed()
    return register_page(request)


@router.post("/register", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def do_register(request: Request, email: Text, password: Text, first_name: OptionalText = "",
                last_name: OptionalText = "") -> HTMLResponse:
    users = room(request).users
    values = {"email": email, "first_name": first_name, "last_name": last_name}
    # One of the UI's languages, never the raw header: a client may send any length of text there.
    language = i18n.choose_language(None, request.headers.get("accept-language"))
    try:
        web_state(request).limits.hit("register", email=email, client=client_address(request))
    except RateLimited as exc:
        return too_many(request, _("Create an account"), exc)
    try:
        # An address that has an account gets the same answer (its owner a reset mail instead).
        users.register(Profile(email=email, first_name=first_name, last_name=last_name,
                               preferred_language=language), password)
    except InvalidInput as exc:
        return register_page(request, error=error_text(exc), values=values, status_code=422)
    return form_page(request, _("Check your mail"),
                     notice=_("We sent a confirmation link to {email}.").format(email=email),
                     links=[{"href": "/login", "label": _("Log in")}])


@router.get("/confirm-email", response_class=HTMLResponse)
def show_confirm(request: Request, code: str = "") -> HTMLResponse:
    return form_page(request, _("Confirm your e-mail address"),
                     intro=_("Press the button to confirm that this address is yours."),
                     fields=[], submit=_("Confirm"), hidden={"code": code})


@router.post("/confirm-email", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def do_confirm(request: Request, code: Text) -> Response:
    try:
        room(request).users.confirm_email(code)
    except InvalidInput as exc:
        return form_page(request, _("Confirm your e-mail address"), error=error_text(exc), status_code=422,
                         links=[{"href": "/login", "label": _("Log in")}])
    return see_other(request, "/login?done=confirmed")


@router.get("/forgot-password", response_class=HTMLResponse)
def show_forgot(request: Request) -> HTMLResponse:
    return form_page(request, _("Forgot your password?"),
                     intro=_("Enter your e-mail address and we mail you a link to choose a new password."),
                     fields=[field("email", _("E-mail address"), "email", autocomplete="email")],
                     submit=_("Send link"), links=[{"href": "/login", "label": _("Log in")}])


@router.post("/forgot-password", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def do_forgot(request: Request, email: Text) -> HTMLResponse:
    try:
        web_state(request).limits.hit("forgot-password", email=email, client=client_address(request))
    except RateLimited as exc:
        return too_many(request, _("Forgot your password?"), exc)
    room(request).users.request_password_reset(email)
    # The same page whatever the address: nobody learns which addresses have accounts.
    return form_page(request, _("Check your mail"),
                     notice=_("If {email} belongs to an account, a link to choose a new password is on its way. "
                              "It is valid for one hour.").format(email=email),
                     links=[{"href": "/login", "label": _("Log in")}])


def reset_page(request: Request, code: str, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    return form_page(request, _("Choose a new password"), error=error, status_code=status_code,
                     fields=[field("password", _("New password"), "password", autocomplete="new-password"),
                             field("revoke_tokens", _("Also revoke all my API tokens"), "checkbox", "on",
                                   required=False)],
                     submit=_("Set password"), hidden={"code": code})


@router.get("/reset-password", response_class=HTMLResponse)
def show_reset(request: Request, code: str = "") -> HTMLResponse:
    try:
        room(request).users.check_reset_code(code)
    except InvalidInput as exc:
        return form_page(request, _("Choose a new password"), error=error_text(exc), status_code=422,
                         links=[{"href": "/forgot-password", "label": _("Ask for a new link")}])
    return reset_page(request, code)


@router.post("/reset-password", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def do_reset(request: Request, code: Text, password: Text,
             revoke_tokens: Annotated[str | None, Form()] = None) -> Response:
    try:
        room(request).users.reset_password(code, password, revoke_tokens=revoke_tokens is not None)
    except InvalidInput as exc:
        return reset_page(request, code, error=error_text(exc), status_code=422)
    web_session(request).log_out()  # its server-side session is revoked with all others of the user
    return see_other(request, "/login?done=reset")


CREATED_NOTICE = "api-token-created"
CREATED_NOTICE_SECONDS = 600


def _new_token_box(request: Request) -> Fernet:
    """Seals a new token for its one trip in the session cookie, which is signed but readable."""
    return Fernet(base64.urlsafe_b64encode(room(request).secrets.derive_key("web-new-token")))


def take_new_token(request: Request) -> str | None:
    """The token created just before, once: a reload of the page shows it no more (nor creates another)."""
    session = web_session(request)
    if session.notice is None or session.notice[0] != CREATED_NOTICE:
        return None  # another page's notice: left for that page
    _notice, sealed = session.take_notice() or ("", "")
    try:
        return _new_token_box(request).decrypt(sealed.encode(), ttl=CREATED_NOTICE_SECONDS).decode()
    except InvalidToken:
        return None


@router.get("/account", response_class=HTMLResponse)
def show_account(request: Request, done: str = "") -> HTMLResponse:
    session = login(request)
    new_token = take_new_token(request)
    tokens = room(request).api_tokens.list(session.subject, session.user.id)
    notices = {"password": _("Your password was changed."), "language": _("The language was changed.")}
    return render(request, "account.html", tokens=tokens, new_token=new_token, error=None, notice=notices.get(done))


@router.post("/account/language", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def choose_language(request: Request, language: Text) -> Response:
    """The UI's (and the account mails') language: stored on the profile, so it beats the browser's."""
    session = login(request)
    if language not in i18n.LANGUAGES:
        tokens = room(request).api_tokens.list(session.subject, session.user.id)
        return render(request, "account.html", status_code=422, error=_("Choose one of the offered languages."),
                      new_token=None, tokens=tokens, notice=None)
    room(request).users.update_profile(session.subject, session.user.id,
                                       replace(session.user.profile, preferred_language=language),
                                       notify_user=False)
    return see_other(request, "/account?done=language")


def parse_days(value: str) -> float | None:
    """The optional "expires in days" field: empty means never."""
    if not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(_("Expires in days must be a number."), field="expires_days") from None


@router.post("/account/tokens", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def create_token(request: Request, name: Text, expires_days: Annotated[str, Form()] = "") -> Response:
    session = login(request)
    tokens = room(request).api_tokens
    try:
        days = parse_days(expires_days)
        _token, secret = tokens.create(session.subject, session.user.id, name, expires_days=days)
    except InvalidInput as exc:
        return render(request, "account.html", status_code=422, error=error_text(exc), new_token=None, notice=None,
                      tokens=tokens.list(session.subject, session.user.id))
    # Post/redirect/get: reloading the page that shows the token must not create another one.
    web_session(request).flash(CREATED_NOTICE, _new_token_box(request).encrypt(secret.encode()).decode())
    return see_other(request, "/account")


@router.post("/account/tokens/{token_id}/revoke", dependencies=[Depends(csrf_form)])
def revoke_token(request: Request, token_id: str) -> Response:
    session = login(request)
    room(request).api_tokens.revoke(session.subject, session.user.id, token_id)
    return see_other(request, "/account")


@router.post("/account/password", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def change_password(request: Request, current_password: Text, new_password: Text) -> Response:
    session = login(request)
    tokens = room(request).api_tokens.list(session.subject, session.user.id)
    try:
        room(request).users.change_password(session.subject, session.user.id, current_password, new_password,
                                            keep_session=web_session(request).key)
    except (InvalidInput, AuthenticationFailed) as exc:
        return render(request, "account.html", status_code=422, error=error_text(exc), new_token=None, tokens=tokens,
                      notice=None)
    return see_other(request, "/account?done=password")
