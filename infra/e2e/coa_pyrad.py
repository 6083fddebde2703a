#!/usr/bin/env python3
"""Checks a Disconnect-Request or CoA-Request we sent, with a decoder we did not write (pyrad).

    python3 infra/e2e/coa_pyrad.py --secret S --hex PACKET_HEX --user U --session ID [--framed-ip IP] [--rate R]

Decodes the packet with pyrad (PyPI) and exits non-zero with the reason unless: it is a
Disconnect-Request (40) or CoA-Request (43); its Request Authenticator verifies (RFC 5176 3.3,
pyrad VerifyCoARequest); it carries a Message-Authenticator that verifies (RFC 3579, pyrad); and
User-Name, Acct-Session-Id (and Framed-IP-Address, Mikrotik-Rate-Limit when given) are as expected.
Exit codes: 0 success, 1 a check failed, 2 bad usage, 3 pyrad is missing.
"""

import argparse
import io
import sys

try:
    import pyrad.packet
    from pyrad.dictionary import Dictionary
except ImportError as e:  # pragma: no cover - environment problem
    print(f"error: pyrad is not installed ({e}); python3 -m pip install pyrad", file=sys.stderr)
    sys.exit(3)

DICTIONARY = """
ATTRIBUTE   User-Name               1   string
ATTRIBUTE   NAS-IP-Address          4   ipaddr
ATTRIBUTE   Framed-IP-Address       8   ipaddr
ATTRIBUTE   Vendor-Specific         26  octets
ATTRIBUTE   Calling-Station-Id      31  string
ATTRIBUTE   NAS-Identifier          32  string
ATTRIBUTE   Acct-Session-Id         44  string
ATTRIBUTE   Message-Authenticator   80  octets
ATTRIBUTE   Error-Cause             101 integer

VENDOR      Mikrotik                14988
BEGIN-VENDOR Mikrotik
ATTRIBUTE   Mikrotik-Rate-Limit     8   string
END-VENDOR  Mikrotik
"""


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secret", required=True)
    ap.add_argument("--hex", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--session", required=True)
    ap.add_argument("--framed-ip")
    ap.add_argument("--rate")
    a = ap.parse_args()
    try:
        raw = bytes.fromhex(a.hex.strip())
    except ValueError:
        print("error: --hex is not hexadecimal", file=sys.stderr)
        sys.exit(2)
    d = Dictionary(io.StringIO(DICTIONARY))
    try:
        p = pyrad.packet.CoAPacket(packet=raw, secret=a.secret.encode(), dict=d)
    except Exception as e:  # pyrad raises PacketError and others
        fail(f"pyrad cannot decode it: {e}")
    if p.code not in (pyrad.packet.DisconnectRequest, pyrad.packet.CoARequest):
        fail(f"code {p.code} is neither Disconnect-Request (40) nor CoA-Request (43)")
    if not p.VerifyCoARequest():
        fail("Request Authenticator does not verify (RFC 5176 3.3)")
    if p.message_authenticator is None:
        fail("no Message-Authenticator")
    if not p.verify_message_authenticator():
        fail("Message-Authenticator does not verify")
    got = lambda name: p[name][0] if name in p else None  # noqa: E731
    if got("User-Name") != a.user:
        fail(f"User-Name {got('User-Name')!r}, expected {a.user!r}")
    if got("Acct-Session-Id") != a.session:
        fail(f"Acct-Session-Id {got('Acct-Session-Id')!r}, expected {a.session!r}")
    if a.framed_ip and got("Framed-IP-Address") != a.framed_ip:
        fail(f"Framed-IP-Address {got('Framed-IP-Address')!r}, expected {a.framed_ip!r}")
    if a.rate and got("Mikrotik-Rate-Limit") != a.rate:
        fail(f"Mikrotik-Rate-Limit {got('Mikrotik-Rate-Limit')!r}, expected {a.rate!r}")
    kind = "Disconnect-Request" if p.code == pyrad.packet.DisconnectRequest else "CoA-Request"
    print(f"ok: {kind} id {p.id} for {a.user}/{a.session} verified by pyrad")


if __name__ == "__main__":
    main()
