"""A logged-in staff HTTP session (requests) and a Socket.IO client on its cookie, for access tests."""

from __future__ import annotations

import re

import requests
import socketio
from halls import PASSWORD


def staff_session(base_url: str, username: str, password: str = PASSWORD) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{base_url}/dashboard/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    answer = session.post(
        f"{base_url}/dashboard/login",
        data={"csrf_token": token, "username": username, "password": password},
        timeout=30,
    )
    answer.raise_for_status()
    session.headers["X-CSRFToken"] = csrf_token(session, base_url)
    return session


def csrf_token(session: requests.Session, base_url: str) -> str:
    page = session.get(f"{base_url}/dashboard/", timeout=10)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)


def socket_for(session: requests.Session | None, base_url: str, exam_id: int) -> socketio.Client:
    """Connect a Socket.IO client (long-polling) with the session's cookie; raises ConnectionError if
    the server refuses the handshake."""
    client = socketio.Client(reconnection=False)
    refusals: list[object] = []
    client.on("connect_error", refusals.append)
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies) if session else ""
    try:
        client.connect(
            base_url,
            headers={"Cookie": cookie} if cookie else {},
            auth={"exam": exam_id},
            transports=["polling"],
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError as exc:
        raise socketio.exceptions.ConnectionError(f"refused: {refusals[0] if refusals else exc}") from None

    return client
