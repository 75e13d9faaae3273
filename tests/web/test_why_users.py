"""The users pages for an account created without the confirmation mail (issue #13, item 13): the admin is
told the user cannot log in yet and can mark the address verified; the login page tells the truth."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mailroom
from tests.web.conftest import PASSWORD, csrf_of


def form(client: TestClient, **fields: object) -> dict[str, object]:
    return {"csrf_token": client.headers["X-CSRF-Token"], **fields}


def login_answer(app: FastAPI, email: str, language: str = "en-US") -> str:
    with TestClient(app, headers={"Accept-Language": language}) as anonymous:
        token = csrf_of(anonymous.get("/login").text)
        answer = anonymous.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                                follow_redirects=False)
        return answer.text if answer.status_code != 303 else "logged in"


def test_a_user_created_without_the_mail_can_be_marked_verified(app: FastAPI, admin: TestClient,
                                                                room: Mailroom) -> None:
    created = admin.post("/users", data=form(admin, email="bea@example.org", password=PASSWORD, language="en"))

    assert created.status_code == 200
    assert "bea@example.org was created, but cannot log in until the address is verified" in created.text
    assert "Mark verified" in created.text  # the way out, on the page the admin lands on
    refused = login_answer(app, "bea@example.org")
    assert "follow the link in the confirmation mail if you got one" in refused
    assert "ask an administrator to mark your address verified" in refused
    assert "the mail we sent you" not in refused

    bea = room.users.find_user(SYSTEM, "bea@example.org")
    assert bea is not None and not bea.verified
    assert f'action="/users/{bea.id}/verified"' in admin.get("/users").text
    marked = admin.post(f"/users/{bea.id}/verified", data=form(admin, back="list"))
    assert marked.status_code == 200 and "The address bea@example.org is marked verified" in marked.text
    assert login_answer(app, "bea@example.org") == "logged in"


def test_the_create_form_can_mark_the_address_verified(app: FastAPI, admin: TestClient, room: Mailroom) -> None:
    created = admin.post("/users", data=form(admin, email="cem@example.org", password=PASSWORD, verified="1",
                                             notify="1"))

    assert "cem@example.org was created." in created.text
    cem = room.users.find_user(SYSTEM, "cem@example.org")
    assert cem is not None and cem.verified
    assert room.search_mail_log(SYSTEM).total == 0, "a verified address gets no confirmation mail"
    assert login_answer(app, "cem@example.org") == "logged in"


def test_the_login_message_in_german(app: FastAPI, admin: TestClient) -> None:
    admin.post("/users", data=form(admin, email="dora@example.org", password=PASSWORD))

    assert "Folgen Sie dem Link in der Bestätigungsmail, falls Sie eine erhalten haben" in \
        login_answer(app, "dora@example.org", "de-DE,de;q=0.9")


def test_only_user_managers_mark_addresses_verified(admin: TestClient, room: Mailroom, user_with: object) -> None:
    admin.post("/users", data=form(admin, email="eva@example.org", password=PASSWORD))
    eva = room.users.find_user(SYSTEM, "eva@example.org")
    assert eva is not None
    operator = user_with("mail-operator")  # type: ignore[operator]
    token = csrf_of(operator.get("/account").text)

    assert operator.post(f"/users/{eva.id}/verified", data={"csrf_token": token}).status_code == 403
    assert not room.users.get_user(SYSTEM, eva.id).verified
