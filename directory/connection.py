"""One connection to one directory server, on python-ldap (OpenLDAP's C libldap): LDAPv3 (RFC 4511)
over TCP, TLS or a Unix socket, with the results the client needs and nothing left to guess.

``ldap://host:port`` (StartTLS on request, RFC 4511 section 4.14), ``ldaps://host:port`` (TLS from
the first byte) and ``ldapi://<percent-encoded socket path>`` are libldap's own. TLS always verifies
the server's certificate chain and name (RFC 4513 section 3.1.3; libldap checks IP addresses too):
a refused StartTLS or a certificate that does not verify is an error, never a silent fall back to
plain text. libldap connects with the first request, within ``connect_timeout``; every reply waits
``operation_timeout`` at most (a reply that does not come in time: its request is abandoned, the
connection dropped, and the server's breaker counts a timeout). Searches that may return many
entries ask for pages (RFC 2696), so a server's size limit (Active Directory's MaxPageSize, 1,000)
cannot cut them short.

libldap is used as it was built for this: one handle per pooled slot, LDAPv3, referrals not chased
(a search reference is skipped; the client reads one directory and never sends its credentials
elsewhere), aliases never dereferenced, the asynchronous calls and their replies awaited with a
timeout (python-ldap releases the GIL meanwhile). A result code, success or not, is a
:class:`Result`; a failure to talk to the server is an ``OSError`` (``TimeoutError`` for a reply
that did not come; the caller tries another connection or server); a reply libldap cannot decode
(a server that does not speak LDAPv3) is :class:`ProtocolError`.

A hung server (stopped, not dead: it accepts connections and never answers) must not hold the
service's threads. Every exchange with a server goes through that server's :class:`Breaker` (one per
URL and process): after ``breaker_failures`` timeouts or slow failures in a row the server is not asked
for ``breaker_cooldown`` seconds (:class:`CircuitOpen`, at once), then one trial call decides; at
most ``server_concurrency`` calls of a process wait on one server at once. Work done inside
:func:`deadline` ends within that many seconds all together: each connect and reply waits at most
what is left. The web layer wraps each request in one; each ``tessera`` command's directory work
is in one too, counted from its first exchange with a server (a password typed at a prompt before
it is not directory work). A connection to a later server is
retired after :data:`FAILBACK_AFTER` seconds, so the client goes back to the first server once it
answers again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

import ldap
from ldap.controls import LDAPControl, ResponseControl
from ldap.controls.pagedresults import SimplePagedResultsControl
from pyasn1.error import PyAsn1Error

from directory.config import DirectoryConfig
from directory.filters import Filter

__all__ = ["BASE", "SUBTREE", "PAGE_SIZE", "Breaker", "CircuitOpen", "Entry", "FailBack", "LdapConnection",
           "ProtocolError", "Result", "breaker_for", "configure", "deadline"]

log = logging.getLogger("tessera.directory")

BASE, SUBTREE = ldap.SCOPE_BASE, ldap.SCOPE_SUBTREE  # search scopes (RFC 4511 section 4.5.1.2)
PAGED_RESULTS_OID = SimplePagedResultsControl.controlType  # RFC 2696
#: entries per page of a paged search: below Active Directory's default MaxPageSize (1,000)
PAGE_SIZE = 500


class ProtocolError(Exception):
    """A server's reply is not LDAPv3 (libldap could not decode it): the directory's fault."""


class CircuitOpen(ConnectionError):
    """A server not asked at all: its breaker is open after repeated failures, a trial call is
    under way, too many calls already wait on it, or the work's deadline is spent. An ``OSError``,
    so the client fails over to the next server, then says the directory is unavailable."""


class _Window:
    """When the work of a :func:`deadline` block must be done: ``seconds`` after the block began,
    or after its first exchange with a server (``lazy``), and never after an enclosing block's."""

    def __init__(self, seconds: float, lazy: bool, outer: "_Window | None") -> None:
        self.seconds, self.outer = seconds, outer
        self.end = None if lazy else time.monotonic() + seconds

    def due(self) -> float:
        """The time.monotonic() by which the work ends (a lazy window's clock starts now, at its first use)."""
        if self.end is None:
            self.end = time.monotonic() + self.seconds
        return self.end if self.outer is None else min(self.end, self.outer.due())


#: the current work's window; None: no deadline but each operation's own timeout
_deadline: ContextVar[_Window | None] = ContextVar("tessera_directory_deadline", default=None)


@contextmanager
def deadline(seconds: float, *, from_first_exchange: bool = False) -> Iterator[None]:
    """Directory work inside the block ends within ``seconds``, all together: each connect and each
    reply waits at most what is left, and nothing is sent once it is spent (:class:`CircuitOpen`).
    The seconds count from entering the block, or with ``from_first_exchange`` from the block's
    first exchange with a server (a command that asks for a password first). Nested blocks keep
    the sooner deadline."""
    token = _deadline.set(_Window(seconds, from_first_exchange, _deadline.get()))
    try:
        yield
    finally:
        _deadline.reset(token)


def _left(timeout: float) -> float:
    """Seconds one exchange may wait: ``timeout``, or what is left of the deadline if less."""
    window = _deadline.get()
    if window is None:
        return timeout
    left = window.due() - time.monotonic()
    if left <= 0:
        raise CircuitOpen("the directory work's deadline is spent")
    return min(timeout, left)


class Breaker:
    """One server's circuit breaker and bulkhead, in one process.

    Closed: calls go through; a timeout or a slow failure counts (:data:`SLOW_FAILURE`), a reply
    resets the count. After ``failures`` in a row it opens: for ``cooldown`` seconds every call
    fails at once with :class:`CircuitOpen`. Then one trial call (the thread that makes it may
    connect, bind and search) is let through: a reply closes the breaker, a failure opens it for
    another cooldown; other calls fail at once meanwhile. A successful connect alone proves nothing
    (the kernel accepts connections for a stopped server), so only replies close it.

    The bulkhead, for work under a :func:`deadline` (the service's requests, whose threads it
    protects): at most ``concurrency`` such calls wait on the server at once. One more waits for a
    place while some holder is younger than :data:`SLOW_FAILURE` (a healthy server frees places in
    milliseconds), and fails at once when every holder is older: a server that stopped answering
    holds ``concurrency`` threads of a process, not all of them."""

    #: a failure counts when it is a timeout or took this long (seconds): one that costs no time
    #: (connection refused, a server that died) fails fast by itself, and the server is asked again
    #: as soon as it is back; also the age after which a call holding a place counts as stuck
    SLOW_FAILURE = 0.5
    #: seconds after which a trial call that never finished no longer blocks another one
    TRIAL_EXPIRY = 30.0

    def __init__(self, url: str, failures: int = 3, cooldown: float = 30.0, concurrency: int = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url, self.clock = url, clock
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._holders: dict[object, float] = {}  # calls holding a place -> when they took it
        self.tune(failures, cooldown, concurrency)
        self.failures = 0
        self.open_until = 0.0  # 0: closed
        self._trial: tuple[int, float] | None = None  # (thread, since) of the trial call when half-open

    def tune(self, failures: int, cooldown: float, concurrency: int) -> None:
        """Set the limits."""
        if failures < 1 or cooldown <= 0 or concurrency < 1:
            raise ValueError("breaker limits must be positive")
        with self._lock:
            self.limit, self.cooldown, self.concurrency = failures, cooldown, concurrency

    @property
    def state(self) -> str:
        """``closed``, ``open`` (failing fast) or ``half-open`` (the next call is a trial)."""
        if not self.open_until:
            return "closed"
        return "open" if self.clock() < self.open_until else "half-open"

    def _admit(self) -> None:
        if not self.open_until:
            return
        now, me = self.clock(), threading.get_ident()
        with self._lock:
            if not self.open_until:
                return
            if now < self.open_until:
                raise CircuitOpen(f"{self.url} is not asked for {self.open_until - now:.0f} s more "
                                  f"after {self.failures} timeouts or slow failures in a row")
            if self._trial is not None and self._trial[0] != me and now - self._trial[1] < self.TRIAL_EXPIRY:
                raise CircuitOpen(f"{self.url} is being tried again by another call")
            if self._trial is None or self._trial[0] != me:
                self._trial = (me, now)

    def _take_place(self, wait: float) -> object:
        """A place among the ``concurrency`` (see the class docstring), or CircuitOpen."""
        place = object()
        end = time.monotonic() + wait
        with self._freed:
            while len(self._holders) >= self.concurrency:
                now = time.monotonic()
                youngest = max(self._holders.values())
                if now - youngest >= self.SLOW_FAILURE or now >= end:
                    raise CircuitOpen(f"{len(self._holders)} calls already wait on {self.url}")
                self._freed.wait(min(end - now, self.SLOW_FAILURE - (now - youngest)) + 0.001)
            self._holders[place] = time.monotonic()
        return place

    def _leave_place(self, place: object) -> None:
        with self._freed:
            del self._holders[place]
            self._freed.notify()

    def _replied(self) -> None:
        if self.failures or self.open_until:
            with self._lock:
                if self.open_until:
                    log.warning("directory %s answers again: calls resume", self.url)
                self.failures, self.open_until, self._trial = 0, 0.0, None

    def _failed(self) -> None:
        with self._lock:
            self.failures += 1
            if self.open_until or self.failures >= self.limit:  # a failed trial, or the limit reached
                if not self.open_until:
                    log.error("directory %s timed out or failed slowly %d times in a row: not asked for %.0f s",
                              self.url, self.failures, self.cooldown)
                self.open_until, self._trial = self.clock() + self.cooldown, None

    @contextmanager
    def call(self, timeout: float, *, reply: bool = True) -> Iterator[float]:
        """Guard one exchange with the server; yields the seconds it may wait (``timeout``, or less
        near the deadline). ``reply``: whether finishing it means the server answered."""
        wait = _left(timeout)
        self._admit()
        place = self._take_place(wait) if _deadline.get() is not None else None
        began = self.clock()
        try:
            try:
                yield _left(timeout)
            except (OSError, ProtocolError) as exc:
                if not isinstance(exc, CircuitOpen) and (isinstance(exc, TimeoutError) or self.open_until
                                                         or self.clock() - began >= self.SLOW_FAILURE):
                    self._failed()
                raise
            if reply:
                self._replied()
        finally:
            if place is not None:
                self._leave_place(place)


_breakers: dict[str, Breaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(url: str) -> Breaker:
    """The breaker of the server at ``url`` in this process."""
    with _breakers_lock:
        breaker = _breakers.get(url)
        if breaker is None:
            breaker = _breakers[url] = Breaker(url)
        return breaker


#: seconds a connection to a server after the first configured one serves before it is retired,
#: so that the client connects again, to the first server if it is back (failback)
FAILBACK_AFTER = 60.0
#: a later server's URL -> the first server of its configuration (:func:`configure`)
_preferred: dict[str, str] = {}


class FailBack(CircuitOpen):
    """A connection to a later server retired unused (nothing was sent): the client connects again,
    to the first server when its breaker lets it be asked."""


def configure(config: DirectoryConfig) -> None:
    """Give the breakers of ``config``'s servers its limits (``TESSERA_LDAP_BREAKER_*``), and
    connections to its later servers their failback to the first."""
    for url in config.urls:
        breaker_for(url).tune(config.breaker_failures, config.breaker_cooldown, config.server_concurrency)
    for url in config.urls[1:]:
        _preferred[url] = config.urls[0]


os.register_at_fork(after_in_child=_breakers.clear)  # a worker's breakers are its own


class Result(NamedTuple):
    """An LDAPResult (RFC 4511 section 4.1.9): the code, its description (libldap's, ``Invalid
    credentials``), the diagnostic message, and the response's controls (OID -> value octets, None
    for a control without a value)."""

    code: int
    name: str
    diagnostic: str
    controls: dict[str, bytes | None]


class Entry(NamedTuple):
    """A SearchResultEntry (section 4.5.2): attribute names lower-cased, values as text."""

    dn: str
    attributes: dict[str, list[str]]


class _RawControl(ResponseControl):
    """A response control kept as its value's octets: :mod:`directory.ppolicy` and :meth:`LdapConnection.search`
    decode the ones the client reads."""

    value: bytes | None = None

    def decodeControlValue(self, encodedControlValue: bytes | None) -> None:  # python-ldap calls it so
        self.value = encodedControlValue


class _EveryControlRaw(dict[str, type[ResponseControl]]):
    """python-ldap's ``resp_ctrl_classes``: every response control, known to python-ldap or not, as
    a :class:`_RawControl` (an empty mapping would mean python-ldap's own decoders)."""

    def __missing__(self, oid: str) -> type[ResponseControl]:
        return _RawControl


# one entry, so that the mapping is not empty: python-ldap takes an empty one for "its own decoders"
_RAW_CONTROLS = _EveryControlRaw({PAGED_RESULTS_OID: _RawControl})
_SUCCESS = "Success"
# the reply each request waits for (RFC 4511 section 4.2 ff.)
_BIND, _SEARCH_DONE, _MODIFY, _ADD, _DELETE, _EXTENDED = (ldap.RES_BIND, ldap.RES_SEARCH_RESULT, ldap.RES_MODIFY,
                                                          ldap.RES_ADD, ldap.RES_DELETE, ldap.RES_EXTENDED)
_SEARCH_ENTRY, _SEARCH_REFERENCE = ldap.RES_SEARCH_ENTRY, ldap.RES_SEARCH_REFERENCE


def _result_of(exc: ldap.LDAPError) -> Result | None:
    """The LDAPResult a server sent, which python-ldap raises for any code but success; None for
    libldap's own errors (no reply: its dict has no ``msgtype``)."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else None
    if info is None or "msgtype" not in info or not isinstance(info.get("result"), int):
        return None
    return Result(info["result"], str(info.get("desc") or ""), str(info.get("info") or ""),
                  {oid: value for oid, _, value in info.get("ctrls") or ()})


#: every open connection of this process, for :func:`_disown_inherited`
_open: weakref.WeakSet[LdapConnection] = weakref.WeakSet()


class LdapConnection:
    """A connection to one server (``start_tls`` upgrades an ``ldap://`` one at once, anything else
    connects with the first request), used by one thread at a time (the client's pool sees to that)."""

    def __init__(self, url: str, *, connect_timeout: float, operation_timeout: float,
                 ca_file: str | None = None, start_tls: bool = False) -> None:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("ldap", "ldaps", "ldapi") or (scheme != "ldapi" and not parts.hostname):
            raise ValueError(f"not an LDAP URL with a host: {url!r}")
        self.url = url
        self._opened = time.monotonic()
        self._breaker = breaker_for(url)
        self._connect_timeout, self._operation_timeout = connect_timeout, operation_timeout
        self._first = True  # the first exchange connects
        self._fd = -1  # then the socket's descriptor, for _disown
        with self._breaker.call(connect_timeout, reply=False):
            pass  # an open breaker, a spent deadline or a full bulkhead refuse the connection now (CircuitOpen)
        self._conn = conn = ldap.initialize(url)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_DEREF, ldap.DEREF_NEVER)
        start_tls = start_tls and scheme == "ldap"
        if scheme == "ldaps" or start_tls:
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)  # chain and name
            if ca_file:
                conn.set_option(ldap.OPT_X_TLS_CACERTFILE, ca_file)
            conn.set_option(ldap.OPT_X_TLS_PROTOCOL_MIN, ldap.OPT_X_TLS_PROTOCOL_TLS1_2)
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # this handle's own TLS context, with the settings above
        _open.add(self)
        if start_tls:
            try:
                with self._exchange() as end:
                    conn.set_option(ldap.OPT_TIMEOUT, max(end - time.monotonic(), 0.001))  # start_tls_s waits this long
                    conn.start_tls_s()  # refused, or the certificate not verified: a ConnectionError
            except BaseException:
                self.close()
                raise

    @contextmanager
    def _exchange(self) -> Iterator[float]:
        """One request and its replies, through the server's breaker, until the time.monotonic()
        it yields (libldap's connect, if this is the first exchange, within ``connect_timeout``).
        libldap's own errors become ``OSError`` and :class:`ProtocolError`. A connection to a later
        server that has served :data:`FAILBACK_AFTER` seconds is retired first (:class:`FailBack`)
        while the first server may be asked."""
        preferred = _preferred.get(self.url)
        if preferred is not None and time.monotonic() - self._opened > FAILBACK_AFTER \
                and breaker_for(preferred).state != "open":
            raise FailBack(f"{self.url} served {FAILBACK_AFTER:.0f} s in place of {preferred}: trying it again")
        with self._breaker.call(self._operation_timeout) as wait:
            first, self._first = self._first, False
            if first:
                self._conn.set_option(ldap.OPT_NETWORK_TIMEOUT, min(self._connect_timeout, wait))
            try:
                yield time.monotonic() + wait
                if first:
                    self._fd = self._conn.get_option(ldap.OPT_DESC)
            except ldap.TIMEOUT as exc:
                raise TimeoutError(f"{self.url} did not answer in time") from exc
            except ldap.LDAPError as exc:
                info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
                described = " ".join(str(info[k]) for k in ("desc", "info") if info.get(k)) or str(exc)
                if isinstance(exc, (ldap.SERVER_DOWN, ldap.CONNECT_ERROR)) or info.get("result", -1) >= 0:
                    # unreachable, TLS not verified; or a result code that ended the connection (a
                    # notice of disconnection, RFC 4511 section 4.4.1; a refused StartTLS)
                    raise ConnectionError(f"{self.url}: {type(exc).__name__}: {described}") from exc
                # DECODING_ERROR, ... from libldap
                raise ProtocolError(f"{self.url} answered with something that is not LDAPv3 "
                                    f"({type(exc).__name__}: {described})") from exc
            except (OSError, ProtocolError):
                raise
            except Exception as exc:  # e.g. a DN that is not UTF-8 (RFC 4511 section 4.1.3)
                raise ProtocolError(f"{self.url} answered with something that is not LDAPv3 "
                                    f"({type(exc).__name__}: {exc})") from exc

    def _reply(self, end: float, msgid: int, expected: int) -> tuple[int, list[Any], Result | None]:
        """The next reply to request ``msgid`` (one message, waiting until ``end`` at most): its
        type, its data, and the Result if it is the request's LDAPResult. One that does not come in
        time: the request is abandoned (RFC 4511 section 4.11) and ``ldap.TIMEOUT`` raised."""
        try:
            kind, data, _, controls, _, _ = self._conn.result4(msgid, 0, max(end - time.monotonic(), 0.001),
                                                               resp_ctrl_classes=_RAW_CONTROLS)
        except ldap.TIMEOUT:
            try:
                self._conn.abandon_ext(msgid)
            except ldap.LDAPError:
                pass  # the connection is dropped anyway
            raise
        except ldap.LDAPError as exc:
            result = _result_of(exc)
            if result is None:
                raise
            kind, data = exc.args[0]["msgtype"], []
        else:
            result = None
            if kind == expected:
                result = Result(0, _SUCCESS, "", {c.controlType: c.value for c in controls})
        if kind != expected and kind not in ((_SEARCH_ENTRY, _SEARCH_REFERENCE) if expected == _SEARCH_DONE else ()):
            raise ProtocolError(f"{self.url} answered request {msgid} with a message of type {kind:#x}")
        return kind, data, result

    def _request(self, expected: int, send: Callable[..., int], *args: Any, **kwargs: Any) -> Result:
        """Send one request (``send(*args, **kwargs)``, python-ldap's asynchronous call) and wait
        for its LDAPResult, a reply of type ``expected``."""
        with self._exchange() as end:
            result = self._reply(end, send(*args, **kwargs), expected)[2]
        if result is None:
            raise ProtocolError(f"{self.url} answered with something that is not the result of the request")
        return result

    # -- operations ------------------------------------------------------------------------
    def bind(self, dn: str, password: bytes, controls: Sequence[tuple[str, bool, bytes | None]] = ()) -> Result:
        """Simple bind (RFC 4511 section 4.2) with octets already prepared (SASLprep): the result
        code says whether the password was right."""
        return self._request(_BIND, self._conn.simple_bind, dn, password, _request_controls(controls))

    def search(self, base: str, search_filter: Filter, attributes: Sequence[str], *, scope: int = SUBTREE,
               size_limit: int = 0, time_limit: int = 0, paged: bool = False,
               limit: int = 0) -> tuple[Result, list[Entry]]:
        """Search (section 4.5), aliases never dereferenced; with ``paged``, page by page (RFC 2696)
        until the server has no more, or ``limit`` entries are in (the rest is abandoned)."""
        entries: list[Entry] = []
        names = list(attributes) or ["1.1"]
        cookie = b""
        while True:
            page = [SimplePagedResultsControl(False, size=PAGE_SIZE, cookie=cookie)] if paged else None
            with self._exchange() as end:
                msgid = self._conn.search_ext(base, scope, search_filter.text, names, serverctrls=page,
                                              timeout=time_limit or -1, sizelimit=size_limit)
                while True:
                    kind, data, result = self._reply(end, msgid, _SEARCH_DONE)
                    if result is not None:
                        break
                    if kind == _SEARCH_ENTRY:
                        entries += [Entry(dn, _attributes(found)) for dn, found in data]
            cookie = _cookie(self.url, result) if paged and result.code == 0 else b""
            if limit and len(entries) >= limit:
                if cookie:  # page size 0 with the cookie ends the paged search (RFC 2696 section 3)
                    self._request(_SEARCH_DONE, self._conn.search_ext, base, scope, search_filter.text, ["1.1"],
                                  serverctrls=[SimplePagedResultsControl(False, size=0, cookie=cookie)])
                return result, entries[:limit]
            if not cookie:
                return result, entries

    def modify(self, dn: str, changes: dict[str, list[tuple[int, list[str]]]]) -> Result:
        """Modify (section 4.6), changes as {attribute: [(ldap.MOD_*, values)]}; no values with
        ``ldap.MOD_DELETE``: the attribute goes."""
        modlist = [(operation, name, [v.encode() for v in values] or None)
                   for name, listed in changes.items() for operation, values in listed]
        return self._request(_MODIFY, self._conn.modify_ext, dn, modlist)

    def add(self, dn: str, object_class: str, attributes: dict[str, str]) -> Result:
        """Add (section 4.7)."""
        modlist = [("objectClass", [object_class.encode()])] + [(n, [v.encode()]) for n, v in attributes.items()]
        return self._request(_ADD, self._conn.add_ext, dn, modlist)

    def delete(self, dn: str) -> Result:
        """Delete (section 4.8)."""
        return self._request(_DELETE, self._conn.delete_ext, dn)

    def modify_password(self, dn: str, old: bytes, new: bytes,
                        controls: Sequence[tuple[str, bool, bytes | None]] = ()) -> Result:
        """The password modify extended operation (RFC 3062) on ``dn``'s own password."""
        return self._request(_EXTENDED, self._conn.passwd, dn, old, new, _request_controls(controls))

    def close(self) -> None:
        """Unbind (section 4.3) and close; never raises."""
        _open.discard(self)
        try:
            self._conn.unbind_ext()
        except ldap.LDAPError:  # the server went away first, or closed already: nothing left to close
            pass

    def _disown(self) -> None:
        """In a forked child: this handle's socket is the parent's. Point it at /dev/null, so that
        nothing the child does with it (its unbind when dropped) reaches the parent's server. No
        library call: a thread of the parent may have held the handle's lock at the fork."""
        if self._fd >= 0:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, self._fd)
            finally:
                os.close(null)


def _disown_inherited() -> None:
    """After a fork, in the child: connections are per process (the pool opens its own)."""
    for conn in list(_open):
        conn._disown()
    _open.clear()


os.register_at_fork(after_in_child=_disown_inherited)


def _request_controls(controls: Sequence[tuple[str, bool, bytes | None]]) -> list[LDAPControl] | None:
    """Request controls (RFC 4511 section 4.1.11) from (OID, criticality, value octets)."""
    return [LDAPControl(oid, critical, value) for oid, critical, value in controls] or None


def _cookie(url: str, result: Result) -> bytes:
    """The cookie of a paged search's response control (RFC 2696 section 2): empty when it is done."""
    value = result.controls.get(PAGED_RESULTS_OID)
    if value is None:
        return b""
    page = SimplePagedResultsControl()
    try:
        page.decodeControlValue(value)
    except PyAsn1Error as exc:
        raise ProtocolError(f"{url} sent a paged results control that is not RFC 2696's: {exc}") from exc
    return bytes(page.cookie)


def _attributes(raw: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Attribute names lower-cased; values as UTF-8 text (LDAPString, RFC 4511 section 4.1.2): a
    value that is not UTF-8 is shown, not trusted."""
    attributes: dict[str, list[str]] = {}
    for name, values in raw.items():
        attributes.setdefault(name.lower(), []).extend(v.decode("utf-8", "replace") for v in values)
    return attributes
