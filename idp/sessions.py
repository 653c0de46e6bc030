"""Server-side staff sessions: the cookie holds a random id, the SQL row holds the data.

Because the record is on the server a session can be ended from anywhere (log out everywhere,
a leaver, the help desk). Ending a session, a timeout included, ends the OpenID Connect tokens
issued in it (:func:`idp.oidc.tokens.end_session_tokens`, in the same transaction) and tells the
listeners of its store (:meth:`SessionStore.on_ended`: back-channel logout). The id is rotated at every privilege
change (login), so an id planted before login is worthless afterwards (OWASP session fixation). Idle and absolute timeouts are enforced when the
session is opened. Cookies are HttpOnly, SameSite=Lax (the OIDC redirect back from a relying
party is a top-level GET that must carry it) and Secure with the ``__Host-`` prefix under TLS.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any, NamedTuple

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import CallbackDict

from idp.models import WebSession
from idp.oidc.tokens import end_session_tokens
from store.driver_read import DriverRead

_TOUCH_EVERY = datetime.timedelta(seconds=30)

# Every request loads and most save a session: one Core statement each, built once from the table
# (the ORM's unit of work would cost more than the statement), on a pooled connection returned at once.
# The load runs on the driver (store.driver_read; its measured gain in docs/platform-notes.md)
_LOAD = select(WebSession.data_json, WebSession.created_at, WebSession.last_seen_at, WebSession.sid).where(
    WebSession.id_hash == bindparam("key"))
_INSERT = insert(WebSession)
#: the new values come as parameters named after their columns; a rotation is one update too (the
#: row takes the new id and restarts its absolute timeout)
_UPDATE = update(WebSession).where(WebSession.id_hash == bindparam("key"))
#: ended: the row goes, and with it the tokens issued in the session (:func:`end_session_tokens`)
_DELETE = delete(WebSession).where(WebSession.id_hash == bindparam("key")).returning(WebSession.uid, WebSession.sid)


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class EndedSession(NamedTuple):
    """A session just ended: whose it was (None before a login completed) and its OpenID Connect sid."""

    uid: str | None
    sid: str | None


class StaffSession(CallbackDict[str, Any], SessionMixin):
    """A session's data plus where it lives. ``rotate()`` gives it a new id when saved."""

    def __init__(self, initial: dict[str, Any] | None = None, sid: str | None = None,
                 created_at: datetime.datetime | None = None, last_seen_at: datetime.datetime | None = None,
                 oidc_sid: str | None = None) -> None:
        def on_update(self_: "StaffSession") -> None:
            self_.modified = True

        super().__init__(initial or {}, on_update)
        self.sid = sid
        self.created_at = created_at
        self.last_seen_at = last_seen_at
        self._oidc_sid = oidc_sid
        self.modified = False
        self.rotate_requested = False
        self.ended = False

    @property
    def oidc_sid(self) -> str:
        """The session as OpenID Connect names it (the ``sid`` of Front-/Back-Channel Logout 1.0):
        random and not a credential, made when first asked for and kept when the cookie's id
        rotates (a person logging in again in this browser keeps their applications' tokens;
        another person's login ends them: :class:`idp.oidc.tokens.IssuedToken`)."""
        if self._oidc_sid is None:
            self._oidc_sid = secrets.token_urlsafe(16)
            self.modified = True
        return self._oidc_sid

    @property
    def id_hash(self) -> str | None:
        return _hash(self.sid) if self.sid else None

    def rotate(self) -> None:
        """Issue a new id (and restart the absolute timeout) when the response is sent."""
        self.rotate_requested = True
        self.modified = True

    def end(self) -> None:
        """Delete the record and the cookie."""
        self.clear()
        self.ended = True
        self.modified = True


class SessionStore:
    """The SQL side: load, save, end one, end all of a staff member, list them."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime.datetime],
                 idle: datetime.timedelta, absolute: datetime.timedelta,
                 tuning: Callable[[str], int] | None = None) -> None:
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self._load = DriverRead(self.engine, _LOAD)
        self.clock = clock
        self._idle = idle
        self._absolute = absolute
        #: the runtime settings in force (idp/runtime_settings.py), read on each use; None: fixed
        self._tuning = tuning
        #: told of the sessions ended, after their transaction (the provider's back-channel logout)
        self._listeners: list[Callable[[list[EndedSession]], None]] = []

    def on_ended(self, listener: Callable[[list[EndedSession]], None]) -> None:
        """Call ``listener`` with the sessions every later end (logout, timeout, log out everywhere,
        a leaver, the help desk) ended, once they are gone. A listener equal to one already
        registered is not added twice."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def announce(self, ended: list[EndedSession]) -> None:
        """Tell the listeners (:meth:`on_ended`) of sessions ended and committed."""
        if ended:
            for listener in list(self._listeners):
                listener(ended)

    @property
    def idle(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self._tuning("session.idle_seconds")) if self._tuning else self._idle

    @property
    def absolute(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self._tuning("session.absolute_seconds")) if self._tuning else self._absolute

    def load(self, sid: str) -> StaffSession | None:
        now = self.clock()
        row = self._load.first({"key": _hash(sid)})
        if row is None:
            return None
        data_json, created_at, last_seen_at, oidc_sid = row
        if not self.alive(created_at, last_seen_at, now):
            self.delete(sid)
            return None
        return StaffSession(json.loads(data_json), sid, created_at, last_seen_at, oidc_sid)

    def alive(self, created_at: datetime.datetime, last_seen_at: datetime.datetime, now: datetime.datetime) -> bool:
        """Whether a session created and last seen then is within its idle and absolute timeouts
        now (also asked for the tokens issued in a session: idp.oidc.tokens)."""
        return now - last_seen_at <= self.idle and now - created_at <= self.absolute

    def save(self, data: StaffSession, address: str | None, user_agent: str | None) -> str:
        """Write the session; returns its (possibly new) id."""
        now = self.clock()
        if data.sid is None or data.rotate_requested:
            old = data.sid
            data.sid = secrets.token_urlsafe(32)
            data.created_at = now
            row = {"id_hash": _hash(data.sid), "uid": data.get("_user_id"), "data_json": json.dumps(dict(data)),
                   "created_at": now, "last_seen_at": now, "address": (address or "")[:64],
                   "user_agent": (user_agent or "")[:255], "sid": data.oidc_sid}
            with self.engine.begin() as conn:
                # rotated: the old row takes the new id, so the old id is worthless at once; else (or
                # if that row was ended meanwhile) a new row
                if old is None or not conn.execute(_UPDATE, {**row, "key": _hash(old)}).rowcount:
                    conn.execute(_INSERT, row)
        else:
            with self.engine.begin() as conn:
                conn.execute(_UPDATE, {"uid": data.get("_user_id"), "data_json": json.dumps(dict(data)),
                                       "last_seen_at": now, "key": _hash(data.sid), "sid": data.oidc_sid})
        data.last_seen_at = now
        data.rotate_requested = False
        return data.sid

    def touch(self, data: StaffSession) -> None:
        with self.engine.begin() as conn:
            conn.execute(_UPDATE, {"last_seen_at": self.clock(), "key": _hash(data.sid or "")})

    def delete(self, sid: str) -> None:
        """End the session whose cookie holds ``sid`` (logout, a timeout noticed) with its tokens."""
        with self.engine.begin() as conn:
            ended, _ = self._end(conn, _DELETE, {"key": _hash(sid)})
        self.announce(ended)

    def end_all(self, uid: str, except_sid: str | None = None) -> int:
        """End every session of ``uid`` (log out everywhere, a leaver) with its tokens; the number ended."""
        with self.engine.begin() as conn:
            ended, _ = self.end_all_in(conn, uid, except_sid)
        self.announce(ended)
        return len(ended)

    def end_all_in(self, conn: Connection, uid: str,
                   except_sid: str | None = None) -> tuple[list[EndedSession], int]:
        """:meth:`end_all` inside the caller's transaction (with its audit entry): the sessions
        ended and the number of access tokens revoked. The caller announces the sessions
        (:meth:`announce`) once the transaction committed."""
        query = delete(WebSession).where(WebSession.uid == uid)
        if except_sid:
            query = query.where(WebSession.id_hash != _hash(except_sid))
        return self._end(conn, query.returning(WebSession.uid, WebSession.sid))

    def _end(self, conn: Connection, query: Any,
             parameters: dict[str, Any] | None = None) -> tuple[list[EndedSession], int]:
        """Run the DELETE ``query`` (returning uid and sid) and end the ended sessions' tokens."""
        ended = [EndedSession(uid, sid) for uid, sid in conn.execute(query, parameters or {})]
        return ended, end_session_tokens(conn, [e.sid for e in ended if e.sid], self.clock())

    def list_for(self, uid: str) -> list[WebSession]:
        with self.sessions() as session:
            return list(session.scalars(select(WebSession).where(WebSession.uid == uid)
                                        .order_by(WebSession.last_seen_at.desc())))

    def purge_expired(self) -> int:
        """End the sessions past their idle or absolute timeout, with their tokens; the number ended."""
        now = self.clock()
        query = delete(WebSession).where((WebSession.last_seen_at < now - self.idle) |
                                         (WebSession.created_at < now - self.absolute))
        with self.engine.begin() as conn:
            ended, _ = self._end(conn, query.returning(WebSession.uid, WebSession.sid))
        self.announce(ended)
        return len(ended)


class StaffSessionInterface(SessionInterface):
    """Flask's session, kept in :class:`SessionStore`."""

    def __init__(self, store: SessionStore, secure: bool) -> None:
        self.store = store
        self.secure = secure
        self.cookie_name = "__Host-tessera" if secure else "tessera_session"

    def open_session(self, app: Flask, request: Request) -> StaffSession:
        sid = request.cookies.get(self.cookie_name)
        if sid and len(sid) < 100:
            loaded = self.store.load(sid)
            if loaded is not None:
                return loaded
        return StaffSession()

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, StaffSession)
        if session.ended:
            if session.sid:
                self.store.delete(session.sid)
            response.delete_cookie(self.cookie_name, path="/", secure=self.secure, httponly=True, samesite="Lax")
            return
        if not session.modified:
            if session.sid and session.last_seen_at and self.store.clock() - session.last_seen_at > _TOUCH_EVERY:
                self.store.touch(session)
            return
        if not session and session.sid is None:
            return  # nothing worth a record
        if session.sid is None and secrets.randbelow(200) == 0:
            self.store.purge_expired()
        from flask import request

        old = session.sid
        sid = self.store.save(session, request.remote_addr, request.headers.get("User-Agent"))
        if sid != old:
            response.set_cookie(self.cookie_name, sid, path="/", secure=self.secure, httponly=True, samesite="Lax")
        response.vary.add("Cookie")
