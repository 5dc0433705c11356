"""Socket.IO for the live view: authentication at the handshake, one room per watched exam.

The browser connects with ``auth={"exam": <id>}`` and the same session cookie as its pages. ``connect``
refuses (``ConnectionRefusedError``) anyone not logged in or not assigned to that exam; identity is never
taken from a later event. After that the socket only receives: ``seats``, ``observations``, ``hall`` and
``exam`` events, emitted by ``hall_server.live.bus``.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app, request
from flask_socketio import ConnectionRefusedError, SocketIO, join_room

from hall_server import staff
from hall_server.live import bus
from hall_server.web import get_db

from .auth import current_user


def register(socketio: SocketIO) -> None:
    watching: dict[str, int] = {}  # Socket.IO sid -> exam id, for disconnect
    lock = threading.Lock()

    def connect(auth: Any = None) -> None:
        user = current_user()
        if user is None:
            raise ConnectionRefusedError("log in first")
        exam_id = auth.get("exam") if isinstance(auth, dict) else None
        if not isinstance(exam_id, int) or not staff.may_watch(get_db(), user.id, exam_id):
            raise ConnectionRefusedError("not assigned to this exam")
        join_room(bus.room(exam_id))
        sid = request.sid  # type: ignore[attr-defined]
        with lock:
            watching[sid] = exam_id
        current_app.extensions["invigil_live"].watch(exam_id, +1)

    def disconnect(*_reason: Any) -> None:
        sid = request.sid  # type: ignore[attr-defined]
        with lock:
            exam_id = watching.pop(sid, None)
        if exam_id is not None:
            current_app.extensions["invigil_live"].watch(exam_id, -1)

    socketio.on_event("connect", connect)
    socketio.on_event("disconnect", disconnect)
