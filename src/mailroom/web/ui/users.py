"""Admin UI: users (create, enable / disable, roles, verification mail) and the roles with their permissions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from babel import Locale
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mailroom.domain.permissions import MANAGE_USERS, READ_USERS, Permission, Subject
from mailroom.domain.users import Profile, Role, User
from mailroom.errors import InvalidInput
from mailroom.web import context
from mailroom.web.context import csrf_form, room, web_session
from mailroom.web.i18n import LANGUAGES, error_text
from mailroom.web.i18n import gettext as _
from mailroom.web.pages import render, see_other

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]
FormFlag = Annotated[str | None, Form()]
FormList = Annotated[list[str] | None, Form()]


@dataclass(frozen=True, slots=True)
class UserForm:
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    language: str = "en"
    roles: tuple[str, ...] = ()
    notify: bool = True
    verified: bool = False


def user_form(email: FormText = "", first_name: FormText = "", last_name: FormText = "", language: FormText = "en",
              roles: FormList = None, notify: FormFlag = None, verified: FormFlag = None) -> UserForm:
    return UserForm(email=email.strip(), first_name=first_name.strip(), last_name=last_name.strip(),
                    language=language.strip() or "en", roles=tuple(roles or ()), notify=notify is not None,
                    verified=verified is not None)


UserFormData = Annotated[UserForm, Depends(user_form)]


def language_names() -> dict[str, str]:
    """The UI's languages, each named in itself (a German admin still finds "English")."""
    return {code: Locale.parse(code).get_display_name(code) or code for code in LANGUAGES}


def role_name(role: Role) -> str:
    # Built-in role names are in the catalog; a custom role keeps the name its creator gave it.
    return _(role.name)


def permission_label(permission: Permission) -> str:
    return _(permission.label)


def permission_description(permission: Permission) -> str:
    return _(permission.description)


def roles_by_id(request: Request, caller: Subject) -> dict[str, Role]:
    return {role.id: role for role in room(request).users.roles(caller)}


# English msgids of admin.po, translated when shown.
DONE_NOTICES = {"created": "{email} was created.",
                "created_notified": "{email} was created. A mail with a link to confirm the address is on its way.",
                "enabled": "{email} can log in again.",
                "disabled": "{email} is disabled and cannot log in.",
                "roles": "The roles of {email} were saved.",
                "resent": "A new verification mail to {email} is on its way; older links no longer work.",
                "created_unverified": "{email} was created, but cannot log in until the address is verified: no "
                                      "confirmation mail was sent. Mark the address verified, or send a "
                                      "verification mail.",
                "verified": "The address {email} is marked verified: the user can log in."}


def done(request: Request, path: str, what: str, email: str) -> RedirectResponse:
    # The notice rides in the signed session cookie, not the URL: a link cannot make the page say anything.
    web_session(request).flash(what, email)
    return see_other(request, path)


def notice_for(request: Request) -> str | None:
    found = web_session(request).take_notice()
    return _(DONE_NOTICES[found[0]]).format(email=found[1]) if found and found[0] in DONE_NOTICES else None


@router.get("/users", response_class=HTMLResponse)
def list_users(request: Request) -> HTMLResponse:
    caller = context.subject(request)
    users = sorted(room(request).users.list_users(caller), key=lambda u: u.email)
    return render(request, "users.html", users=users, roles=roles_by_id(request, caller), role_name=role_name,
                  notice=notice_for(request))


@router.get("/users/roles", response_class=HTMLResponse)
def list_roles(request: Request) -> HTMLResponse:
    caller = context.subject(request)
    permissions = room(request).users.permissions()
    return render(request, "users_roles.html", roles=room(request).users.roles(caller), permissions=permissions,
                  by_id={p.id: p for p in permissions}, role_name=role_name, permission_label=permission_label,
                  permission_description=permission_description)


def form_page(request: Request, caller: Subject, form: UserForm, *, error: str | None = None,
              error_field: str | None = None, status_code: int = 200) -> HTMLResponse:
    return render(request, "users_form.html", status_code=status_code, form=form, error=error,
                  error_field=error_field, roles=room(request).users.roles(caller), role_name=role_name,
                  languages=language_names(), min_password=room(request).users.policy.min_password_length)


@router.get("/users/new", response_class=HTMLResponse)
def new_user(request: Request) -> HTMLResponse:
    caller = context.subject(request)
    caller.require(MANAGE_USERS)
    return form_page(request, caller, UserForm())


@router.post("/users", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def create_user(request: Request, form: UserFormData, password: FormText = "") -> Response:
    caller = context.subject(request)
    caller.require(MANAGE_USERS)
    try:
        profile = Profile(email=form.email, first_name=form.first_name, last_name=form.last_name,
                          preferred_language=form.language)
        user = room(request).users.create_user(caller, profile, password=password or None, roles=form.roles,
                                               notify_user=form.notify and not form.verified,
                                               verified=form.verified)
    except InvalidInput as exc:
        return form_page(request, caller, form, error=error_text(exc), error_field=exc.field, status_code=422)
    if user.verified or not form.notify:
        # Without the mail nobody will confirm the address: say so, on the user's page with the way out.
        return done(request, f"/users/{user.id}", "created" if user.verified else "created_unverified", user.email)
    return done(request, "/users", "created_notified", user.email)


def detail_page(request: Request, caller: Subject, user: User, *, notice: str | None = None,
                error: str | None = None, status_code: int = 200) -> HTMLResponse:
    return render(request, "users_detail.html", status_code=status_code, account=user, notice=notice, error=error,
                  roles=room(request).users.roles(caller), role_name=role_name, languages=language_names(),
                  is_self=caller.user_id == user.id)


@router.get("/users/{user_id}", response_class=HTMLResponse)
def show_user(request: Request, user_id: str) -> HTMLResponse:
    caller = context.subject(request)
    caller.require(READ_USERS)  # also for one's own entry: the page lists every role
    user = room(request).users.get_user(caller, user_id)
    return detail_page(request, caller, user, notice=notice_for(request))


@router.post("/users/{user_id}/roles", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def set_roles(request: Request, user_id: str, roles: FormList = None) -> Response:
    caller = context.subject(request)
    users = room(request).users
    try:
        user = users.set_roles(caller, user_id, list(roles or ()))
    except InvalidInput as exc:
        return detail_page(request, caller, users.get_user(caller, user_id), error=error_text(exc), status_code=422)
    return done(request, f"/users/{user.id}", "roles", user.email)


@router.post("/users/{user_id}/enabled", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def set_enabled(request: Request, user_id: str, enabled: FormText) -> Response:
    caller = context.subject(request)
    users = room(request).users
    turn_on = enabled == "true"
    try:
        user = users.set_enabled(caller, user_id, turn_on)
    except InvalidInput as exc:
        return detail_page(request, caller, users.get_user(caller, user_id), error=error_text(exc), status_code=422)
    return done(request, "/users", "enabled" if turn_on else "disabled", user.email)


@router.post("/users/{user_id}/resend-verification", response_class=HTMLResponse,
             dependencies=[Depends(csrf_form)])
def resend_verification(request: Request, user_id: str) -> Response:
    caller = context.subject(request)
    users = room(request).users
    user = users.get_user(caller, user_id)
    try:
        users.resend_verification(caller, user_id)
    except InvalidInput as exc:
        return detail_page(request, caller, user, error=error_text(exc), status_code=422)
    return done(request, f"/users/{user.id}", "resent", user.email)


@router.post("/users/{user_id}/verified", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def mark_verified(request: Request, user_id: str, back: Annotated[str, Form()] = "") -> Response:
    caller = context.subject(request)
    user = room(request).users.mark_verified(caller, user_id)
    return done(request, "/users" if back == "list" else f"/users/{user.id}", "verified", user.email)
