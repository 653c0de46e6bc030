"""One connection to one directory server: LDAPv3 over TCP, TLS or a Unix socket (RFC 4511
section 5, RFC 4513 section 3).

``ldap://host:port`` (StartTLS on request, RFC 4511 section 4.14), ``ldaps://host:port`` (TLS from
the first byte) and ``ldapi://<percent-encoded socket path>`` are understood. TLS always verifies
the server's certificate and name: a refused StartTLS or a certificate that does not verify is an
error, never a silent fall back to plain text. Every socket operation has a timeout. Any failure
to talk to the server is an :class:`OSError` (the caller tries another server); a reply that is
not valid LDAP is :class:`ProtocolError`.

A connection is used by one thread at a time (the pool in :mod:`idp.directory` sees to that) and
has at most one operation outstanding.
"""

from __future__ import annotations

import socket
import ssl
import urllib.parse
from collections.abc import Iterable

from directory.ldap_messages import (EXTENDED_RESPONSE, INTERMEDIATE_RESPONSE, SEARCH_RESULT_DONE, SEARCH_RESULT_ENTRY,
                               SEARCH_RESULT_REFERENCE, SUBTREE, Control, Entry, Filter, Message, ProtocolError,
                               Result, bind_request, extended_request, message, message_length, modify_request,
                               read_message, search_request, unbind_request)

START_TLS_OID = "1.3.6.1.4.1.1466.20037"
_MAX_MESSAGE_ID = 2**31 - 1


class ConnectionLost(ConnectionError):
    """The server closed the connection, or said it would (notice of disconnection)."""


class StartTlsRefused(ssl.SSLError):
    """The server answered StartTLS with an error: the connection is not used in plain text."""


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify the server's chain (``ca_file``, else the system store) and its name; TLS 1.2 or later."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class LdapConnection:
    """An open connection to ``url``; ``start_tls`` upgrades an ``ldap://`` connection at once."""

    def __init__(self, url: str, *, connect_timeout: float, operation_timeout: float,
                 tls: ssl.SSLContext | None = None, start_tls: bool = False) -> None:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        self.url = url
        self._buffer = bytearray()
        self._next_id = 0
        if scheme == "ldapi":
            path = urllib.parse.unquote(parts.netloc + parts.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(connect_timeout)
            try:
                sock.connect(path)
            except BaseException:
                sock.close()
                raise
        elif scheme in ("ldap", "ldaps"):
            host = parts.hostname
            if not host:
                raise ValueError(f"no host in the directory URL {url!r}")
            port = parts.port or (636 if scheme == "ldaps" else 389)
            sock = socket.create_connection((host, port), timeout=connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # requests are single small writes
        else:
            raise ValueError(f"not an LDAP URL: {url!r}")
        self._sock: socket.socket = sock
        try:
            sock.settimeout(operation_timeout)
            if scheme == "ldaps":
                self._sock = (tls or tls_context(None)).wrap_socket(sock, server_hostname=parts.hostname)
            elif start_tls and scheme == "ldap":
                result = self.extended(START_TLS_OID)
                if result.code != 0:
                    raise StartTlsRefused(f"StartTLS refused by {url}: {result.code} {result.diagnostic}".strip())
                if self._buffer:
                    raise ProtocolError("data after the StartTLS response, before the TLS handshake")
                self._sock = (tls or tls_context(None)).wrap_socket(sock, server_hostname=parts.hostname)
        except BaseException:
            sock.close()
            raise

    # -- operations ------------------------------------------------------------------------
    def bind(self, dn: str, password: bytes, controls: tuple[Control, ...] = ()) -> Result:
        """Simple bind (RFC 4511 section 4.2): the result code says whether the password was right."""
        return self._exchange(bind_request(dn, password), controls).result()

    def search(self, base: str, search_filter: Filter, attributes: Iterable[str], *, scope: int = SUBTREE,
               size_limit: int = 0, time_limit: int = 0) -> tuple[Result, list[Entry]]:
        """Search (section 4.5): the SearchResultDone and every entry; referrals are not followed."""
        message_id = self._send(search_request(base, search_filter, tuple(attributes), scope=scope,
                                               size_limit=size_limit, time_limit=time_limit))
        entries: list[Entry] = []
        while True:
            reply = self._receive(message_id)
            if reply.tag == SEARCH_RESULT_ENTRY:
                entries.append(reply.entry())
            elif reply.tag == SEARCH_RESULT_DONE:
                return reply.result(), entries
            elif reply.tag not in (SEARCH_RESULT_REFERENCE, INTERMEDIATE_RESPONSE):
                raise ProtocolError(f"unexpected protocolOp 0x{reply.tag:02x} in a search")

    def modify(self, dn: str, changes: list[tuple[int, str, list[str]]]) -> Result:
        """Modify (section 4.6)."""
        return self._exchange(modify_request(dn, changes)).result()

    def extended(self, oid: str, value: bytes | None = None, controls: tuple[Control, ...] = ()) -> Result:
        """An extended operation (section 4.12); the response value is ``Result.value``."""
        reply = self._exchange(extended_request(oid, value), controls)
        if reply.tag != EXTENDED_RESPONSE:
            raise ProtocolError(f"protocolOp 0x{reply.tag:02x} answers an extended request")
        return reply.result()

    def close(self) -> None:
        """Unbind (section 4.3) and close; never raises."""
        try:
            self._sock.sendall(message(self._new_id(), unbind_request()))
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass

    # -- the wire --------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id = self._next_id % _MAX_MESSAGE_ID + 1
        return self._next_id

    def _send(self, op: bytes, controls: tuple[Control, ...] = ()) -> int:
        message_id = self._new_id()
        self._sock.sendall(message(message_id, op, controls))
        return message_id

    def _exchange(self, op: bytes, controls: tuple[Control, ...] = ()) -> Message:
        return self._receive(self._send(op, controls))

    def _receive(self, message_id: int) -> Message:
        """The next message for ``message_id``; an unsolicited notification (section 4.4) ends the connection."""
        while True:
            length = message_length(self._buffer)
            if length is not None and len(self._buffer) >= length:
                reply = read_message(bytes(self._buffer[:length]))
                del self._buffer[:length]
                if reply.message_id == message_id:
                    return reply
                if reply.message_id == 0:
                    if reply.tag == EXTENDED_RESPONSE:
                        result = reply.result()
                        raise ConnectionLost(f"the directory ends the connection: {result.code} {result.diagnostic}")
                    raise ProtocolError("an unsolicited message that is not a notification")
                raise ProtocolError(f"a reply to message {reply.message_id} while waiting for {message_id}")
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionLost(f"{self.url} closed the connection")
            self._buffer += chunk
