"""One connection to one directory server, on ldap3: LDAPv3 (RFC 4511) over TCP, TLS or a Unix
socket, with the results the client needs and nothing left to guess.

``ldap://host:port`` (StartTLS on request, RFC 4511 section 4.14), ``ldaps://host:port`` (TLS from
the first byte) and ``ldapi://<percent-encoded socket path>`` are understood. TLS always verifies
the server's certificate chain and name (RFC 4513 section 3.1.3): a refused StartTLS or a
certificate that does not verify is an error, never a silent fall back to plain text. Connecting
has ``connect_timeout``, every reply ``operation_timeout``. Searches that may return many entries
ask for pages (RFC 2696), so a server's size limit (Active Directory's MaxPageSize, 1,000) cannot
cut them short.

ldap3 is used as it was built for this: one ``Connection`` per pooled slot, no schema read
(``get_info=NONE``), no name checks against a schema, referrals not chased (a search reference is
skipped; the client reads one directory and never sends its credentials elsewhere), its fast
decoder. A failure to talk to the server is an ``LDAPException`` or ``OSError`` (the caller tries
another connection or server); a reply ldap3 cannot decode (a server that does not speak LDAPv3)
is :class:`ProtocolError`.

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
import math
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

from ldap3 import BASE, DEREF_NEVER, IP_V4_PREFERRED, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3 import NONE as NO_SERVER_INFO
from ldap3.core.exceptions import LDAPException

from directory.config import DirectoryConfig
from directory.filters import Filter

__all__ = ["BASE", "SUBTREE", "PAGE_SIZE", "Breaker", "CircuitOpen", "Entry", "FailBack", "LdapConnection",
           "ProtocolError", "Result", "breaker_for", "configure", "deadline", "tls_context", "tls_context_for"]

log = logging.getLogger("tessera.directory")

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"  # RFC 2696
#: entries per page of a paged search: below Active Directory's default MaxPageSize (1,000)
PAGE_SIZE = 500
_PASSWORD_MODIFY_OID = "1.3.6.1.4.1.4203.1.11.1"  # RFC 3062


class ProtocolError(Exception):
    """A server's reply is not LDAPv3 (ldap3 could not decode it): the directory's fault."""


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
            except (LDAPException, OSError, ProtocolError) as exc:
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
    """An LDAPResult (RFC 4511 section 4.1.9): the code, its name (``invalidCredentials``), the
    diagnostic message, and the response's controls (OID -> value: octets, or what ldap3 decoded
    for the controls it knows)."""

    code: int
    name: str
    diagnostic: str
    controls: dict[str, Any]


class Entry(NamedTuple):
    """A SearchResultEntry (section 4.5.2): attribute names lower-cased, values as text."""

    dn: str
    attributes: dict[str, list[str]]


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify the server's chain (``ca_file``, else the system store) and its name; TLS 1.2 or later."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _VerifyingTls(Tls):
    """ldap3's TLS settings, with the handshake done by the standard library's verifying context:
    chain and host name (RFC 6125, IP addresses included) are checked in the handshake itself.
    ldap3's own name check after the handshake relies on ssl.match_hostname, which Python 3.12
    removed; its fallback refuses certificates for IP addresses."""

    def __init__(self, context: ssl.SSLContext, host: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context, self._host = context, host

    def wrap_socket(self, connection: Connection, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(connection.socket, server_hostname=self._host,
                                                      do_handshake_on_connect=do_handshake)


def tls_context_for(config: DirectoryConfig) -> ssl.SSLContext | None:
    """The verifying TLS context of ``config``'s servers, if any of them is reached over TLS."""
    if config.ca_file or config.start_tls or any(url.lower().startswith("ldaps://") for url in config.urls):
        return tls_context(config.ca_file)
    return None


def _server(url: str, connect_timeout: float, tls: ssl.SSLContext | None) -> Server:
    """ldap3's description of the server at ``url``: no schema read, every address of its name
    tried (IPv4 first). A new one for each connection: ldap3 remembers an address that failed for
    a while, and the client's failover keeps that account itself."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "ldapi":
        return Server(url, get_info=NO_SERVER_INFO, connect_timeout=connect_timeout)
    if scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(f"not an LDAP URL with a host: {url!r}")
    verifying = None
    if tls is not None or scheme == "ldaps":
        verifying = _VerifyingTls(tls or tls_context(None), parts.hostname)
    return Server(parts.hostname, port=parts.port or (636 if scheme == "ldaps" else 389), use_ssl=scheme == "ldaps",
                  tls=verifying, get_info=NO_SERVER_INFO, connect_timeout=connect_timeout, mode=IP_V4_PREFERRED)


class LdapConnection:
    """An open connection to one server (``start_tls`` upgrades an ``ldap://`` one at once), used by
    one thread at a time (the client's pool sees to that)."""

    def __init__(self, url: str, *, connect_timeout: float, operation_timeout: float,
                 tls: ssl.SSLContext | None = None, start_tls: bool = False) -> None:
        self.url = url
        self._opened = time.monotonic()
        self._breaker = breaker_for(url)
        self._operation_timeout = operation_timeout
        with self._breaker.call(connect_timeout, reply=False) as wait:
            # ldap3 sets the receive timeout with SO_RCVTIMEO, which takes whole seconds; each
            # exchange then sets the socket's own timeout to what it may wait (_exchange)
            self._conn = Connection(_server(url, wait, tls), authentication=SIMPLE, raise_exceptions=False,
                                    check_names=False, auto_referrals=False, auto_range=False,
                                    return_empty_attributes=False, receive_timeout=max(1, math.ceil(operation_timeout)))
            try:
                with self._ldap():
                    self._conn.open(read_server_info=False)
                    if self._conn.socket.family != socket.AF_UNIX:
                        self._conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one small write a request
            except BaseException:
                self.close()
                raise
        if start_tls and url.lower().startswith("ldap://"):
            try:
                with self._exchange():
                    self._conn.start_tls(read_server_info=False)  # raises if refused or not verified
            except BaseException:
                self.close()
                raise

    @contextmanager
    def _ldap(self) -> Iterator[None]:
        """ldap3 at work: what its decoder raises on octets that are not LDAPv3 is a ProtocolError."""
        try:
            yield
        except (LDAPException, OSError):
            raise
        except Exception as exc:  # IndexError, KeyError, ... from decoding what is not an LDAPMessage
            raise ProtocolError(f"{self.url} answered with something that is not LDAPv3 "
                                f"({type(exc).__name__}: {exc})") from exc

    @contextmanager
    def _exchange(self) -> Iterator[None]:
        """One request and its reply, through the server's breaker, waiting at most what it allows.
        A connection to a later server that has served :data:`FAILBACK_AFTER` seconds is retired
        first (:class:`FailBack`) while the first server may be asked."""
        preferred = _preferred.get(self.url)
        if preferred is not None and time.monotonic() - self._opened > FAILBACK_AFTER \
                and breaker_for(preferred).state != "open":
            raise FailBack(f"{self.url} served {FAILBACK_AFTER:.0f} s in place of {preferred}: trying it again")
        with self._breaker.call(self._operation_timeout) as wait:
            if self._conn.socket is not None:
                self._conn.socket.settimeout(wait)
            with self._ldap():
                yield

    def _result(self) -> Result:
        result = self._conn.result
        if not isinstance(result, dict) or not isinstance(result.get("result"), int):
            raise ProtocolError(f"no LDAP result from {self.url}")
        controls = {oid: (control or {}).get("value") for oid, control in (result.get("controls") or {}).items()}
        return Result(result["result"], str(result.get("description") or ""), str(result.get("message") or ""),
                      controls)

    # -- operations ------------------------------------------------------------------------
    def bind(self, dn: str, password: bytes, controls: Sequence[tuple[str, bool, Any]] = ()) -> Result:
        """Simple bind (RFC 4511 section 4.2) with octets already prepared (SASLprep): the result
        code says whether the password was right."""
        self._conn.user, self._conn.password = dn, password
        with self._exchange():
            self._conn.bind(read_server_info=False, controls=list(controls) or None)
        return self._result()

    def search(self, base: str, search_filter: Filter, attributes: Sequence[str], *, scope: str = SUBTREE,
               size_limit: int = 0, time_limit: int = 0, paged: bool = False,
               limit: int = 0) -> tuple[Result, list[Entry]]:
        """Search (section 4.5), aliases never dereferenced; with ``paged``, page by page (RFC 2696)
        until the server has no more, or ``limit`` entries are in (the rest is abandoned)."""
        entries: list[Entry] = []
        cookie: bytes | None = None
        while True:
            with self._exchange():
                self._conn.search(base, search_filter.text, scope, DEREF_NEVER, list(attributes) or ["1.1"],
                                  size_limit, time_limit, paged_size=PAGE_SIZE if paged else None,
                                  paged_cookie=cookie)
                result = self._result()
                entries += [Entry(str(found["dn"]), _attributes(found["raw_attributes"]))
                            for found in self._conn.response or () if found.get("type") == "searchResEntry"]
            page = result.controls.get(PAGED_RESULTS_OID)
            cookie = page.get("cookie") if paged and result.code == 0 and isinstance(page, dict) else None
            if limit and len(entries) >= limit:
                if cookie:
                    with self._exchange():  # page size 0 with the cookie ends the paged search (RFC 2696 section 3)
                        self._conn.search(base, search_filter.text, scope, DEREF_NEVER, ["1.1"], paged_size=0,
                                          paged_cookie=cookie)
                return result, entries[:limit]
            if not cookie:
                return result, entries

    def modify(self, dn: str, changes: dict[str, list[tuple[str, list[str]]]]) -> Result:
        """Modify (section 4.6), changes in ldap3's form: {attribute: [(MODIFY_*, values)]}."""
        with self._exchange():
            self._conn.modify(dn, changes)
        return self._result()

    def add(self, dn: str, object_class: str, attributes: dict[str, str]) -> Result:
        """Add (section 4.7)."""
        with self._exchange():
            self._conn.add(dn, [object_class], attributes)
        return self._result()

    def delete(self, dn: str) -> Result:
        """Delete (section 4.8)."""
        with self._exchange():
            self._conn.delete(dn)
        return self._result()

    def modify_password(self, dn: str, old: bytes, new: bytes,
                        controls: Sequence[tuple[str, bool, Any]] = ()) -> Result:
        """The password modify extended operation (RFC 3062) on ``dn``'s own password."""
        with self._exchange():
            self._conn.extend.standard.modify_password(dn, old, new, controls=list(controls) or None)
        return self._result()

    def close(self) -> None:
        """Unbind (section 4.3) and close; never raises."""
        try:
            self._conn.unbind()
        except (LDAPException, OSError):  # the server went away first: nothing left to close
            pass


def _attributes(raw: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Attribute names lower-cased; values as UTF-8 text (LDAPString, RFC 4511 section 4.1.2): a
    value that is not UTF-8 is shown, not trusted."""
    attributes: dict[str, list[str]] = {}
    for name, values in raw.items():
        attributes.setdefault(name.lower(), []).extend(v.decode("utf-8", "replace") for v in values)
    return attributes
