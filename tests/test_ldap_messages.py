"""The LDAPv3 codec of the login path (idp.ldap_messages, RFC 4511), judged by ldap3's independent
pyasn1 definitions of the same ASN.1: what we encode, ldap3 decodes to the intended request; what
ldap3 encodes as a server would, we decode. The connection's handling of a misbehaving server is
checked against a fake server on a socket; a real slapd is the judge in test_directory.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from ldap3.operation.bind import bind_request_to_dict
from ldap3.operation.extended import extended_request_to_dict
from ldap3.operation.modify import modify_request_to_dict
from ldap3.operation.search import search_operation
from ldap3.protocol.rfc4511 import (LDAPDN, AttributeDescription, BindResponse, Control, ExtendedResponse,
                                    LDAPMessage, LDAPString, MessageID, PartialAttribute, PartialAttributeList,
                                    ProtocolOp, ResultCode, SearchResultDone, SearchResultEntry, UnbindRequest,
                                    Vals)
from pyasn1.codec.ber import decoder, encoder
from ldap3.utils.conv import escape_filter_chars
from pyasn1.type.univ import OctetString

from directory import ldap_messages as m
from directory.client import Directory, DirectoryUnavailable
from directory.config import DirectoryConfig
from directory.ldap_connection import ConnectionLost, LdapConnection
from directory.ppolicy import CONTROL_OID, decode_policy_response


def _decoded(data: bytes) -> LDAPMessage:
    message, rest = decoder.decode(data, asn1Spec=LDAPMessage())
    assert rest == b""
    return message


def _op(data: bytes, name: str):  # type: ignore[no-untyped-def]
    message = _decoded(data)
    assert message["protocolOp"].getName() == name
    return message["protocolOp"].getComponent()


# -- requests: ours, read by ldap3 --------------------------------------------------------
def test_bind_request_with_the_policy_control() -> None:
    data = m.message(7, m.bind_request("uid=heguiying,ou=people,dc=tessera,dc=example", b"p\xc3\xa4ss"),
                     (m.Control(CONTROL_OID),))
    message = _decoded(data)
    assert int(message["messageID"]) == 7
    request = bind_request_to_dict(message["protocolOp"].getComponent())
    assert request["version"] == 3 and request["name"] == "uid=heguiying,ou=people,dc=tessera,dc=example"
    assert request["authentication"]["simple"] == "päss"  # ldap3 shows the octets as UTF-8 text
    controls = message["controls"]
    assert len(controls) == 1 and str(controls[0]["controlType"]) == CONTROL_OID
    assert not bool(controls[0]["criticality"]) and not controls[0]["controlValue"].hasValue()


def _ldap3_search(base: str, text_filter: str, scope: int, attributes: list[str], size_limit: int,
                  time_limit: int) -> bytes:
    """ldap3's own encoding of a SearchRequest from an RFC 4515 filter string (pyasn1 cannot decode
    ldap3's Filter definitions, so search requests are compared octet for octet)."""
    request = search_operation(base, text_filter, scope, 0, attributes, size_limit, time_limit, False, False, False)
    op = ProtocolOp()
    op.setComponentByName("searchRequest", request)
    return encoder.encode(op.getComponent())  # type: ignore[no-any-return]


@pytest.mark.parametrize("value", ["heguiying", "*)(uid=*", "admin)(|(uid=*", "x\x00y", "\\2a", "ä" * 300])
def test_search_filter_values_are_data_not_syntax(value: str) -> None:
    """Whatever the value holds, the filter stays one AND of two equality matches: the same octets
    as ldap3 encodes from the RFC 4515 string with the value escaped."""
    search_filter = m.all_of(m.equals("objectClass", "inetOrgPerson"), m.equals("uid", value))
    ours = m.search_request("ou=people,dc=tessera,dc=example", search_filter, ["uid", "mail", "memberOf"],
                            size_limit=2, time_limit=5)
    text = f"(&(objectClass=inetOrgPerson)(uid={escape_filter_chars(value)}))"
    assert ours == _ldap3_search("ou=people,dc=tessera,dc=example", text, 2, ["uid", "mail", "memberOf"], 2, 5)
    assert value.encode() in ours  # the value itself, as one OCTET STRING


def test_present_filter_base_scope_and_no_attributes() -> None:
    ours = m.search_request("dc=tessera,dc=example", m.present("objectClass"), ["1.1"], scope=m.BASE)
    assert ours == _ldap3_search("dc=tessera,dc=example", "(objectClass=*)", 0, ["1.1"], 0, 0)
    data = m.message(300, m.unbind_request())
    assert int(_decoded(data)["messageID"]) == 300  # two content octets (300 > 127)


@pytest.mark.parametrize("name", ["uid)(cn=*", "uid=x", "", "a b", "1.", "ui\x00d", "-uid"])
def test_attribute_descriptions_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="attribute description"):
        m.equals(name, "x")
    with pytest.raises(ValueError):
        m.search_request("dc=x", m.present("objectClass"), [name])


def test_modify_request() -> None:
    data = m.message(3, m.modify_request("uid=a,dc=x", [(m.DELETE, "pwdAccountLockedTime", []),
                                                        (m.REPLACE, "title", ["Officer", "Ämter"])]))
    request = modify_request_to_dict(_op(data, "modifyRequest"))
    assert request["entry"] == "uid=a,dc=x"
    changes = request["changes"]
    assert [c["operation"] for c in changes] == [1, 2]
    assert changes[0]["attribute"] == {"type": "pwdAccountLockedTime", "value": []}
    assert changes[1]["attribute"] == {"type": "title", "value": ["Officer", "Ämter"]}


def test_password_modify_extended_request() -> None:
    value = m.password_modify_value("uid=a,dc=x", b"old-secret", b"new-secret")
    data = m.message(4, m.extended_request("1.3.6.1.4.1.4203.1.11.1", value))
    request = extended_request_to_dict(_op(data, "extendedReq"))
    assert request["name"] == "1.3.6.1.4.1.4203.1.11.1" and request["value"] == value
    from ldap3.extend.standard.modifyPassword import PasswdModifyRequestValue  # type: ignore[attr-defined]

    decoded, _ = decoder.decode(value, asn1Spec=PasswdModifyRequestValue())
    assert (bytes(decoded["userIdentity"]), bytes(decoded["oldPasswd"]), bytes(decoded["newPasswd"])) == \
        (b"uid=a,dc=x", b"old-secret", b"new-secret")


def test_unbind_request() -> None:
    assert _decoded(m.message(9, m.unbind_request()))["protocolOp"].getName() == "unbindRequest"


# -- responses: ldap3's encoding, read by us ----------------------------------------------
def _server_message(message_id: int, name: str, op,  # type: ignore[no-untyped-def]
                    controls: list[tuple[str, bytes | None]] | list[tuple[str, bytes | None, bool]] = ()) -> bytes:  # type: ignore[assignment]
    """An LDAPMessage as ldap3's pyasn1 definitions encode it; a control is (oid, value[, critical])."""
    message = LDAPMessage()
    message["messageID"] = MessageID(message_id)
    protocol_op = ProtocolOp()
    protocol_op.setComponentByName(name, op)
    message["protocolOp"] = protocol_op
    if controls:
        encoded = message.setComponentByName("controls").getComponentByName("controls")
        for i, (oid, value, *critical) in enumerate(controls):
            control = Control()
            control["controlType"] = oid
            if critical and critical[0]:
                control["criticality"] = True
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


def test_bind_response_with_a_policy_control() -> None:
    locked = bytes.fromhex("3003810101")  # PasswordPolicyResponseValue { error accountLocked }
    data = _server_message(5, "bindResponse", _result(BindResponse, 49, "invalid credentials"),
                           [(CONTROL_OID, locked), ("1.2.3.4", None)])
    assert m.message_length(data) == len(data)
    reply = m.read_message(data)
    assert reply.message_id == 5 and reply.tag == m.BIND_RESPONSE
    result = reply.result()
    assert (result.code, result.diagnostic, result.matched_dn) == (49, "invalid credentials", "")
    assert decode_policy_response(result.controls[CONTROL_OID].value or b"").locked
    assert result.controls["1.2.3.4"].value is None


def test_search_result_entry_and_done() -> None:
    entry = SearchResultEntry()
    entry["object"] = LDAPDN("uid=heguiying,ou=people,dc=tessera,dc=example")
    attributes = PartialAttributeList()
    for i, (name, values) in enumerate([("uid", [b"heguiying"]), ("memberOf", [b"cn=approvers,ou=groups", b"cn=x"]),
                                        ("cn", ["何桂英".encode()]), ("description", [b"\xff\xfe"])]):
        attribute = PartialAttribute()
        attribute["type"] = AttributeDescription(name)
        vals = Vals()
        for j, value in enumerate(values):
            vals.setComponentByPosition(j, OctetString(value))
        attribute["vals"] = vals
        attributes.setComponentByPosition(i, attribute)
    entry["attributes"] = attributes
    found = m.read_message(_server_message(6, "searchResEntry", entry)).entry()
    assert found.dn == "uid=heguiying,ou=people,dc=tessera,dc=example"
    assert found.attributes["uid"] == ["heguiying"] and found.attributes["cn"] == ["何桂英"]
    assert found.attributes["memberof"] == ["cn=approvers,ou=groups", "cn=x"]
    assert found.attributes["description"] == ["\ufffd\ufffd"]  # not UTF-8: shown, not trusted
    done = m.read_message(_server_message(6, "searchResDone", _result(SearchResultDone, 4))).result()
    assert done.code == 4


def test_extended_response_value() -> None:
    response = _result(ExtendedResponse, 0)
    response["responseName"] = "1.3.6.1.4.1.4203.1.11.1"
    response["responseValue"] = b"\x30\x00"
    result = m.read_message(_server_message(8, "extendedResp", response)).result()
    assert result.code == 0 and result.value == b"\x30\x00"


def test_long_form_lengths_as_openldap_sends_them() -> None:
    """slapd writes 4-octet lengths (0x84) even for short elements: still one message."""
    body = b"\x02\x01\x01" + b"\x61\x84\x00\x00\x00\x07" + b"\x0a\x01\x00\x04\x00\x04\x00"
    data = b"\x30\x84" + len(body).to_bytes(4, "big") + body
    assert m.message_length(data[:3]) is None and m.message_length(data) == len(data)
    assert m.read_message(data).result().code == 0


@pytest.mark.parametrize("data", [
    b"\x31\x03\x02\x01\x01",  # not a SEQUENCE
    b"\x30\x80\x02\x01\x01\x00\x00",  # indefinite length (RFC 4511 5.1)
    b"\x30\x85\x00\x00\x00\x00\x05",  # a length of more than four octets
    b"\x30\x84\x7f\xff\xff\xff",  # two gigabytes
])
def test_bad_message_headers(data: bytes) -> None:
    with pytest.raises(m.ProtocolError):
        m.message_length(data)


@pytest.mark.parametrize("data", [
    b"\x30\x03\x02\x01\x01",  # no protocolOp
    b"\x30\x06\x04\x01\x01\x61\x01\x00",  # messageID is not an INTEGER
    b"\x30\x08\x02\x01\x01\x61\x03\x0a\x01\x00",  # an LDAPResult without matchedDN and message
    b"\x30\x09\x02\x01\x01\x61\x05\x0a\x01\x00\x04\x09",  # an element running past its parent
    b"\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04\x00\x04\x00",  # trailing bytes after the message
    b"\x30\x0e\x02\x01\x01\x64\x09\x04\x00\x30\x05\x30\x03\x04\x01\x61",  # an attribute without its values
])
def test_malformed_messages_are_refused(data: bytes) -> None:
    with pytest.raises(m.ProtocolError):
        reply = m.read_message(data)
        reply.entry() if reply.tag == m.SEARCH_RESULT_ENTRY else reply.result()


# -- SASLprep (RFC 4013 section 3's examples) ------------------------------------------------
@pytest.mark.parametrize("password, prepared", [
    ("I\u00adX", "IX"), ("user", "user"), ("USER", "USER"), ("\u00aa", "a"), ("\u2168", "IX"),
    ("pass\u00a0word", "pass word"), ("Tessera-demo-2026!", "Tessera-demo-2026!"),
])
def test_saslprep(password: str, prepared: str) -> None:
    assert m.prepare_password(password) == prepared.encode()


@pytest.mark.parametrize("password", ["\u0007", "tab\there", "\u0627\u0031", "\u00ad"])
def test_saslprep_prohibits(password: str) -> None:
    with pytest.raises(ValueError):
        m.prepare_password(password)


# -- a misbehaving server ----------------------------------------------------------------------
@pytest.fixture
def fake_server() -> Iterator[tuple[str, list[bytes]]]:
    """A server that answers the first request it reads with each of ``replies`` (set by the test)."""
    replies: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            for reply in replies:
                conn.sendall(reply)
            conn.recv(65536)  # until the client closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"ldap://127.0.0.1:{listener.getsockname()[1]}", replies
    listener.close()
    thread.join(timeout=5)


def test_notice_of_disconnection_ends_the_connection(fake_server: tuple[str, list[bytes]]) -> None:
    url, replies = fake_server
    notice = _result(ExtendedResponse, 52, "shutting down")
    notice["responseName"] = "1.3.6.1.4.1.1466.20036"
    replies.append(_server_message(0, "extendedResp", notice))
    conn = LdapConnection(url, connect_timeout=2, operation_timeout=2)
    with pytest.raises(ConnectionLost, match="52 shutting down"):
        conn.bind("uid=a,dc=x", b"secret")
    conn.close()


def test_a_reply_to_another_request_is_refused(fake_server: tuple[str, list[bytes]]) -> None:
    url, replies = fake_server
    replies.append(_server_message(42, "bindResponse", _result(BindResponse, 0)))
    conn = LdapConnection(url, connect_timeout=2, operation_timeout=2)
    with pytest.raises(m.ProtocolError, match="message 42"):
        conn.bind("uid=a,dc=x", b"secret")
    conn.close()


def test_a_reply_in_pieces_and_two_in_one_read(fake_server: tuple[str, list[bytes]]) -> None:
    url, replies = fake_server
    entry = SearchResultEntry()
    entry["object"] = LDAPDN("uid=a,dc=x")
    entry["attributes"] = PartialAttributeList()
    first = _server_message(1, "searchResEntry", entry)
    done = _server_message(1, "searchResDone", _result(SearchResultDone, 0))
    replies.extend([first[:1], first[1:4], first[4:] + done])
    conn = LdapConnection(url, connect_timeout=2, operation_timeout=2)
    result, entries = conn.search("dc=x", m.present("objectClass"), ["1.1"])
    assert result.code == 0 and [e.dn for e in entries] == ["uid=a,dc=x"]
    conn.close()


def test_a_server_that_closes_mid_reply(fake_server: tuple[str, list[bytes]]) -> None:
    url, replies = fake_server
    replies.append(_server_message(1, "bindResponse", _result(BindResponse, 0))[:5])
    conn = LdapConnection(url, connect_timeout=2, operation_timeout=1)
    with pytest.raises(OSError):  # closed (ConnectionLost) or, if the close is slow, the timeout
        conn.bind("uid=a,dc=x", b"secret")
    conn.close()


def test_controls_are_encoded_as_pyasn1_encodes_them() -> None:
    """The same octets as pyasn1's BER, except that TRUE is 0xFF as RFC 4511 section 5.1 requires
    (pyasn1 writes 0x01)."""
    controls = [(CONTROL_OID, None, False), ("1.2.3", b"\x01", True)]
    ours = m.message(1, m.unbind_request(), tuple(m.Control(oid, critical, value) for oid, value, critical in controls))
    theirs = _server_message(1, "unbindRequest", UnbindRequest(), controls)
    assert b"\x01\x01\xff" in ours and ours == theirs.replace(b"\x01\x01\x01\x04", b"\x01\x01\xff\x04")
    decoded = _decoded(ours)["controls"]
    assert [(str(c["controlType"]), bool(c["criticality"])) for c in decoded] == [(CONTROL_OID, False), ("1.2.3", True)]


@pytest.mark.parametrize("reply", [b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\x30\x03\x02\x01\x01"])
def test_a_server_that_does_not_speak_ldap_is_unavailable(fake_server: tuple[str, list[bytes]], reply: bytes) -> None:
    """Not LDAP (an HTTP server on the port, a broken reply): the directory is unavailable, never a
    failed login and never an unhandled error."""
    url, replies = fake_server
    replies.append(reply)
    config = DirectoryConfig(urls=(url,), bind_dn="cn=idp,dc=x", bind_password="secret", base_dn="dc=x",
                             people_base="ou=people,dc=x", groups_base="ou=groups,dc=x",
                             departments_base="ou=departments,dc=x", operation_timeout=1)
    with Directory(config) as directory:
        with pytest.raises(DirectoryUnavailable):
            directory.authenticate("heguiying", "a password")
