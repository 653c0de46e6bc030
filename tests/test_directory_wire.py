"""The directory client on the wire (RFC 4511, on python-ldap): search filters that no value can change
(judged by ldap3's own filter parser, value for value, also for values Hypothesis makes up), SASLprep
of simple-bind passwords (RFC 4013), and a login against a fake server on a socket that shows what
goes out (the ppolicy request control, the prepared password octets, read back by pyasn1 with
ldap3's definitions and by asn1crypto's parser) and what comes back in pieces. A server that
misbehaves (a notice of disconnection, a reply to another request, a reply cut short, something
that is not LDAP) makes the directory unavailable: never a failed login, never an unhandled error.
A real slapd is the judge of everything else in test_directory.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from asn1crypto import parser
from hypothesis import given, settings
from hypothesis import strategies as st
from ldap3.operation.search import compile_filter, parse_filter
from ldap3.protocol.rfc4511 import (LDAPDN, AttributeDescription, BindResponse, Control, ExtendedResponse,
                                    LDAPMessage, LDAPString, MessageID, PartialAttribute, PartialAttributeList,
                                    ProtocolOp, ResultCode, SearchResultDone, SearchResultEntry, Vals)
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type.univ import OctetString

from directory.client import Directory, DirectoryUnavailable, InvalidCredentials
from directory.config import DirectoryConfig
from directory.filters import all_of, any_of, contains, equals, is_attribute_description, present
from directory.ppolicy import CONTROL_OID
from directory.saslprep import prepare_password



# -- filters: ldap3's parser reads back exactly what was meant ------------------------------------
def _parsed(text: str):  # type: ignore[no-untyped-def]
    """The filter as an independent parser reads it: ldap3's, then its pyasn1 structure."""
    return compile_filter(parse_filter(text, None, True, True, None, False).elements[0])


def _equality(compiled) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    match = compiled["equalityMatch"]
    return str(match["attributeDesc"]), bytes(match["assertionValue"])


@pytest.mark.parametrize("value", ["heguiying", "*)(uid=*", "admin)(|(uid=*", "x\x00y", "\\2a", "\\", "ä" * 300,
                                   " heguiying", "heguiying\n", "\u3000张伟", "", "(uid=heguiying)"])
def test_filter_values_are_data_not_syntax(value: str) -> None:
    """Whatever the value holds, the filter stays one AND of two equality matches, and the value
    arrives as itself, octet for octet."""
    compiled = _parsed(all_of(equals("objectClass", "inetOrgPerson"), equals("uid", value)).text)
    members = compiled["and"]
    assert len(members) == 2
    assert _equality(members[0]) == ("objectClass", b"inetOrgPerson")
    assert _equality(members[1]) == ("uid", value.encode())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_any_value_stays_one_assertion_value(value: str) -> None:
    assert _equality(_parsed(equals("cn", value).text)) == ("cn", value.encode())
    if value:
        substrings = _parsed(contains("cn", value).text)["substringFilter"]["substrings"]
        assert len(substrings) == 1 and bytes(substrings[0]["any"]) == value.encode()


def test_or_present_and_substrings() -> None:
    compiled = _parsed(all_of(equals("objectClass", "user"), any_of(contains("uid", "a*b"), contains("title", "c")),
                              present("mail")).text)
    members = compiled["and"]
    alternatives = members[1]["or"]
    assert [str(f["substringFilter"]["type"]) for f in alternatives] == ["uid", "title"]
    assert bytes(alternatives[0]["substringFilter"]["substrings"][0]["any"]) == b"a*b"
    assert str(members[2]["present"]) == "mail"


@pytest.mark.parametrize("name", ["uid)(cn=*", "uid=x", "", "a b", "1.", "ui\x00d", "-uid"])
def test_attribute_descriptions_are_checked(name: str) -> None:
    assert not is_attribute_description(name)
    with pytest.raises(ValueError, match="attribute description"):
        equals(name, "x")
    with pytest.raises(ValueError, match="attribute description"):
        present(name)


def test_empty_compositions_are_refused() -> None:
    with pytest.raises(ValueError):
        all_of()
    with pytest.raises(ValueError):
        any_of()
    with pytest.raises(ValueError):
        contains("cn", "")


# -- SASLprep (RFC 4013 section 3's examples) ------------------------------------------------
@pytest.mark.parametrize("password, prepared", [
    ("I\u00adX", "IX"), ("user", "user"), ("USER", "USER"), ("\u00aa", "a"), ("\u2168", "IX"),
    ("pass\u00a0word", "pass word"), ("Tessera-demo-2026!", "Tessera-demo-2026!"),
])
def test_saslprep(password: str, prepared: str) -> None:
    assert prepare_password(password) == prepared.encode()


@pytest.mark.parametrize("password", ["\u0007", "tab\there", "\u0627\u0031", "\u0031\u0627", "\u00ad"])
def test_saslprep_prohibits(password: str) -> None:
    """Control characters, and RandALCat text that does not start and end with a RandALCat
    character (RFC 3454 section 6; ldap3's own sasl_prep lets "\\u0627\\u0031" through)."""
    with pytest.raises(ValueError):
        prepare_password(password)


# -- a fake server -------------------------------------------------------------------------------
def _server_message(message_id: int, name: str, op,  # type: ignore[no-untyped-def]
                    controls: list[tuple[str, bytes | None]] = ()) -> bytes:  # type: ignore[assignment]
    """An LDAPMessage as ldap3's pyasn1 definitions encode it; a control is (oid, value)."""
    message = LDAPMessage()
    message["messageID"] = MessageID(message_id)
    protocol_op = ProtocolOp()
    protocol_op.setComponentByName(name, op)
    message["protocolOp"] = protocol_op
    if controls:
        encoded = message.setComponentByName("controls").getComponentByName("controls")
        for i, (oid, value) in enumerate(controls):
            control = Control()
            control["controlType"] = oid
            if value is not None:
                control["controlValue"] = value
            encoded.setComponentByPosition(i, control)
    return encoder.encode(message)  # type: ignore[no-any-return]


def _result(cls, code: int, diagnostic: str = ""):  # type: ignore[no-untyped-def]
    response = cls()
    response["resultCode"] = ResultCode(code)
    response["matchedDN"] = LDAPDN("")
    response["diagnosticMessage"] = LDAPString(diagnostic)
    return response


def _entry(dn: str, attributes: dict[str, list[bytes]]) -> SearchResultEntry:
    entry = SearchResultEntry()
    entry["object"] = LDAPDN(dn)
    listed = PartialAttributeList()
    for i, (name, values) in enumerate(attributes.items()):
        attribute = PartialAttribute()
        attribute["type"] = AttributeDescription(name)
        vals = Vals()
        for j, value in enumerate(values):
            vals.setComponentByPosition(j, OctetString(value))
        attribute["vals"] = vals
        listed.setComponentByPosition(i, attribute)
    entry["attributes"] = listed
    return entry


class Request:
    """One LDAPMessage the client sent, read with asn1crypto's parser: its id and protocolOp tag."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        _, _, _, _, contents, _ = parser.parse(data)
        _, _, _, header, value, _ = parser.parse(contents, strict=False)
        self.message_id = int.from_bytes(value, "big")
        self.tag = contents[len(header) + len(value)]

    def bind(self):  # type: ignore[no-untyped-def]
        """The whole message, for a BindRequest (pyasn1 with ldap3's definitions)."""
        message, rest = decoder.decode(self.data, asn1Spec=LDAPMessage())
        assert rest == b"" and message["protocolOp"].getName() == "bindRequest"
        return message


BIND, SEARCH, UNBIND = 0x60, 0x63, 0x42
Answer = Callable[[Request], list[bytes] | None]


@pytest.fixture
def fake_server() -> Iterator[tuple[str, list[Answer], list[Request]]]:
    """A server that answers the n-th request with the n-th answer of the list the test fills:
    the chunks it returns are sent one by one (an empty chunk, or None for the answer, closes the
    connection). Unbinds are not answered. Every connection shares the list."""
    answers: list[Answer] = []
    requests: list[Request] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    lock = threading.Lock()

    def serve(conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while buffer:
                    try:
                        _, _, _, header, contents, _ = parser.parse(buffer, strict=False)
                    except ValueError:  # not all of it yet
                        break
                    request = Request(buffer[:len(header) + len(contents)])
                    buffer = buffer[len(header) + len(contents):]
                    if request.tag == UNBIND:
                        return
                    with lock:
                        requests.append(request)
                        answer = answers.pop(0) if answers else (lambda r: None)
                    reply = answer(request)
                    if reply is None:
                        return
                    for piece in reply:
                        if not piece:  # the answer ends the connection here
                            return
                        conn.sendall(piece)
                        time.sleep(0.01)  # so the client reads the pieces apart

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"ldap://127.0.0.1:{listener.getsockname()[1]}", answers, requests
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting in the thread
    listener.close()
    thread.join(timeout=5)


def _config(url: str) -> DirectoryConfig:
    return DirectoryConfig(urls=(url,), bind_dn="cn=idp,dc=x", bind_password="secret", base_dn="dc=x",
                           people_base="ou=people,dc=x", groups_base="ou=groups,dc=x",
                           departments_base="ou=departments,dc=x", operation_timeout=1)


def _bound(request: Request, code: int = 0, controls: list[tuple[str, bytes | None]] = ()) -> list[bytes]:  # type: ignore[assignment]
    return [_server_message(request.message_id, "bindResponse", _result(BindResponse, code), controls)]


def test_a_login_on_the_wire(fake_server: tuple[str, list[Answer], list[Request]]) -> None:
    """Service bind, the user's entry (sent in pieces, the last piece with the search's end), then
    the user's bind: with the ppolicy request control and the SASLprep'd password; the warning in
    the response control reaches the staff member."""
    url, answers, requests = fake_server
    dn = "uid=heguiying,ou=people,dc=x"

    def entry(request: Request) -> list[bytes]:
        found = _server_message(request.message_id, "searchResEntry", _entry(dn, {
            "uid": [b"heguiying"], "cn": ["何桂英".encode()], "memberOf": [b"cn=approvers,ou=groups,dc=x"]}))
        done = _server_message(request.message_id, "searchResDone", _result(SearchResultDone, 0))
        return [found[:1], found[1:4], found[4:] + done]

    expires = bytes.fromhex("3006a0048002012c")  # warning timeBeforeExpiration 300
    answers += [_bound, entry, lambda r: _bound(r, 0, [(CONTROL_OID, expires)])]
    with Directory(_config(url)) as directory:
        member = directory.authenticate("heguiying", "pa\u00adss-word")  # a soft hyphen: mapped to nothing
    assert member.dn == dn and member.name == "何桂英" and member.is_approver and member.password_expires_in == 300
    assert [r.tag for r in requests] == [BIND, SEARCH, BIND]
    service, user = requests[0].bind(), requests[2].bind()
    assert str(service["protocolOp"]["bindRequest"]["name"]) == "cn=idp,dc=x" and not service["controls"].hasValue()
    bind = user["protocolOp"]["bindRequest"]
    assert int(bind["version"]) == 3 and str(bind["name"]) == dn
    assert bytes(bind["authentication"]["simple"]) == b"pass-word"
    controls = user["controls"]
    assert len(controls) == 1 and str(controls[0]["controlType"]) == CONTROL_OID
    assert not bool(controls[0]["criticality"]) and not controls[0]["controlValue"].hasValue()


def test_a_wrong_password_on_the_wire(fake_server: tuple[str, list[Answer], list[Request]]) -> None:
    url, answers, _ = fake_server

    def entry(request: Request) -> list[bytes]:
        return [_server_message(request.message_id, "searchResEntry", _entry("uid=a,dc=x", {"uid": [b"a"]}))
                + _server_message(request.message_id, "searchResDone", _result(SearchResultDone, 0))]

    answers += [_bound, entry, lambda r: _bound(r, 49)]
    with Directory(_config(url)) as directory:
        with pytest.raises(InvalidCredentials):
            directory.authenticate("a", "not the password")


def _notice(request: Request) -> list[bytes]:
    notice = _result(ExtendedResponse, 52, "shutting down")
    notice["responseName"] = "1.3.6.1.4.1.1466.20036"
    return [_server_message(0, "extendedResp", notice)]


def _other_request(request: Request) -> list[bytes]:
    return [_server_message(request.message_id + 41, "bindResponse", _result(BindResponse, 0))]


def _sequence(request: Request, rest: bytes) -> bytes:
    """An LDAPMessage SEQUENCE of the request's messageID and ``rest`` (short lengths only)."""
    body = encoder.encode(MessageID(request.message_id)) + rest
    return b"\x30" + bytes([len(body)]) + body


def _cut_short(request: Request) -> list[bytes]:
    return [_server_message(request.message_id, "bindResponse", _result(BindResponse, 0))[:5], b""]


@pytest.mark.parametrize("answer", [
    _notice,  # a notice of disconnection (RFC 4511 section 4.4.1)
    _other_request,  # a reply to a message never sent
    _cut_short,  # a reply cut short by the server closing
    lambda r: [b"HTTP/1.1 400 Bad Request\r\n\r\n", b""],  # not LDAP at all (an HTTP server, which then closes)
    lambda r: [_sequence(r, b"")],  # an LDAPMessage without its protocolOp
    lambda r: [_sequence(r, b"\x64\x09\x04\x00\x30\x05\x30\x03\x04\x01\x61")],  # an attribute without values
], ids=["notice-of-disconnection", "another-message-id", "cut-short", "http", "no-protocol-op", "no-values"])
@pytest.mark.parametrize("at", ["bind", "search"])
def test_a_server_that_misbehaves_is_unavailable(fake_server: tuple[str, list[Answer], list[Request]],
                                                 answer: Answer, at: str) -> None:
    """In reply to the service account's bind or to the search for the user: the directory is
    unavailable, never a failed login and never an unhandled error."""
    url, answers, _ = fake_server
    answers += [answer] * 4 if at == "bind" else [_bound, answer] * 4  # every attempt, on every new connection
    with Directory(_config(url)) as directory:
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            directory.authenticate("heguiying", "a password")
        assert time.monotonic() - started < 8
