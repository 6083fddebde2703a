#!/usr/bin/env python3
"""MS-CHAPv2 round trip against a running `proxpanel serve`, with code we did not write.

    python3 infra/e2e/mschapv2_pyrad.py --server 127.0.0.1:1812 --secret S --user U --password P

The Access-Request is built, sent and its reply verified by pyrad (PyPI); the MS-CHAP2-Response is
computed from RFC 2759 over pycryptodome's MD4 and DES (PyPI), not by the code under test. The script
checks, and exits non-zero with the reason otherwise:

  * its RFC 2759 / RFC 3079 functions reproduce the published vectors of RFC 2759 section 9.2 and RFC 3079 section 3.5
    (so a disagreement below is the server's, not this script's);
  * the reply is an Access-Accept whose Response Authenticator and Message-Authenticator verify
    (pyrad, with the Message-Authenticator required);
  * MS-CHAP2-Success carries our identifier and the "S=" authenticator response of RFC 2759 8.7;
  * MS-MPPE-Send-Key and MS-MPPE-Recv-Key (RFC 2548 2.4.2/2.4.3) decrypt, with the shared secret
    and our Request Authenticator, to 16-byte keys equal to the RFC 3079 derivation
    (MasterSendKey / MasterReceiveKey of the server side);
  * the same login with a wrong password is answered with an Access-Reject.

Exit codes: 0 success, 1 a check failed, 2 bad usage, 3 a library is missing or broken.
"""

import argparse
import hashlib
import io
import os
import sys

try:
    import pyrad.packet
    from pyrad.client import Client, Timeout
    from pyrad.dictionary import Dictionary
except ImportError as e:  # pragma: no cover - environment problem
    print(f"error: pyrad is not installed ({e}); python3 -m pip install pyrad", file=sys.stderr)
    sys.exit(3)

# MS-CHAPv2 (RFC 2759) and its MPPE keys (RFC 3079), written from the RFCs over the MD4 and DES of
# pycryptodome (PyPI) and checked against the RFCs' published vectors at every run (self_test). The
# PyPI implementations (py3mschap, pymschap) do not run on Python 3.11, and OpenSSL 3 drops MD4 from
# hashlib.
try:
    from Crypto.Cipher import DES
    from Crypto.Hash import MD4
except ImportError as e:  # pragma: no cover - environment problem
    print(f"error: pycryptodome is not installed ({e}); python3 -m pip install pycryptodome", file=sys.stderr)
    sys.exit(3)


def md4(data):
    return MD4.new(data).digest()


def sha1(*parts):
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return h.digest()


def des_encrypt(clear8, key7):
    """RFC 2759 8.6 DesEncrypt: the 7-octet key spread over 8 octets (parity bits ignored)."""
    bits = int.from_bytes(key7, "big")
    key = bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))
    return DES.new(key, DES.MODE_ECB).encrypt(clear8)


class mschap:  # RFC 2759 section 8
    @staticmethod
    def challenge_hash(peer_chal, auth_chal, user):
        return sha1(peer_chal, auth_chal, user.encode())[:8]

    @staticmethod
    def nt_password_hash(password):
        return md4(password.encode("utf-16-le"))

    @staticmethod
    def hash_nt_password_hash(password_hash):
        return md4(password_hash)

    @staticmethod
    def challenge_response(challenge, password_hash):
        z = password_hash.ljust(21, b"\0")
        return b"".join(des_encrypt(challenge, z[i : i + 7]) for i in (0, 7, 14))

    @staticmethod
    def generate_nt_response_mschap2(auth_chal, peer_chal, user, password):
        challenge = mschap.challenge_hash(peer_chal, auth_chal, user)
        return mschap.challenge_response(challenge, mschap.nt_password_hash(password))

    MAGIC1 = b"Magic server to client signing constant"
    MAGIC2 = b"Pad to make it do more than one iteration"

    @staticmethod
    def generate_authenticator_response(password, nt_response, peer_chal, auth_chal, user):
        hh = mschap.hash_nt_password_hash(mschap.nt_password_hash(password))
        digest = sha1(hh, nt_response, mschap.MAGIC1)
        challenge = mschap.challenge_hash(peer_chal, auth_chal, user)
        digest = sha1(digest, challenge, mschap.MAGIC2)
        return "S=" + digest.hex().upper()


class mppe:  # RFC 3079 section 3
    MAGIC1 = b"This is the MPPE Master Key"
    MAGIC2 = (
        b"On the client side, this is the send key; "
        b"on the server side, it is the receive key."
    )
    MAGIC3 = (
        b"On the client side, this is the receive key; "
        b"on the server side, it is the send key."
    )
    PAD1 = bytes(40)
    PAD2 = b"\xf2" * 40

    @staticmethod
    def get_master_key(password_hash_hash, nt_response):
        return sha1(password_hash_hash, nt_response, mppe.MAGIC1)[:16]

    @staticmethod
    def get_asymmetric_start_key(master, is_send, is_server):
        s = mppe.MAGIC3 if is_send == is_server else mppe.MAGIC2
        return sha1(master, mppe.PAD1, s, mppe.PAD2)[:16]

    @staticmethod
    def mppe_chap2_gen_keys(password, nt_response):
        """The server's (send, receive) start keys: what MS-MPPE-Send-Key / -Recv-Key carry."""
        hh = mschap.hash_nt_password_hash(mschap.nt_password_hash(password))
        master = mppe.get_master_key(hh, nt_response)
        return (
            mppe.get_asymmetric_start_key(master, True, True),
            mppe.get_asymmetric_start_key(master, False, True),
        )


# The attributes this script needs: RFC 2865 and RFC 2869 ones, and Microsoft's (RFC 2548).
DICTIONARY = """
ATTRIBUTE   User-Name               1   string
ATTRIBUTE   User-Password           2   string
ATTRIBUTE   NAS-IP-Address          4   ipaddr
ATTRIBUTE   NAS-Port                5   integer
ATTRIBUTE   Service-Type            6   integer
ATTRIBUTE   Framed-Protocol         7   integer
ATTRIBUTE   Framed-IP-Address       8   ipaddr
ATTRIBUTE   Filter-Id               11  string
ATTRIBUTE   Reply-Message           18  string
ATTRIBUTE   State                   24  octets
ATTRIBUTE   Class                   25  octets
ATTRIBUTE   Vendor-Specific         26  octets
ATTRIBUTE   Session-Timeout         27  integer
ATTRIBUTE   Calling-Station-Id      31  string
ATTRIBUTE   NAS-Identifier          32  string
ATTRIBUTE   Proxy-State             33  octets
ATTRIBUTE   Acct-Interim-Interval   85  integer
ATTRIBUTE   Message-Authenticator   80  octets
ATTRIBUTE   Framed-Pool             88  string
ATTRIBUTE   NAS-Port-Type           61  integer

VENDOR      Microsoft               311
BEGIN-VENDOR Microsoft
ATTRIBUTE   MS-CHAP-Response        1   octets
ATTRIBUTE   MS-CHAP-Error           2   string
ATTRIBUTE   MS-MPPE-Encryption-Policy 7 octets
ATTRIBUTE   MS-MPPE-Encryption-Types 8  octets
ATTRIBUTE   MS-CHAP-Challenge       11  octets
ATTRIBUTE   MS-MPPE-Send-Key        16  octets
ATTRIBUTE   MS-MPPE-Recv-Key        17  octets
ATTRIBUTE   MS-CHAP2-Response       25  octets
ATTRIBUTE   MS-CHAP2-Success        26  octets
END-VENDOR  Microsoft

VENDOR      Mikrotik                14988
BEGIN-VENDOR Mikrotik
ATTRIBUTE   Mikrotik-Rate-Limit     8   string
END-VENDOR  Mikrotik
"""


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def self_test():
    """The MS-CHAPv2 functions against RFC 2759 9.2 and RFC 3079 3.5 (same initial values)."""
    user = "User"
    password = "clientPass"
    auth_chal = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
    peer_chal = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
    nt_response = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
    got = mschap.generate_nt_response_mschap2(auth_chal, peer_chal, user, password)
    check(got == nt_response, f"mschap: NT-Response {got.hex()} is not RFC 2759's")
    got = mschap.generate_authenticator_response(password, nt_response, peer_chal, auth_chal, user)
    check(
        got.endswith("S=407A5589115FD0D6209F510FE9C04566932CDA56"),
        f"mschap: AuthenticatorResponse {got!r} is not RFC 2759's",
    )
    pw_hash = mschap.nt_password_hash(password)
    check(pw_hash.hex().upper() == "44EBBA8D5312B8D611474411F56989AE", "mschap: NtPasswordHash")
    pw_hash_hash = mschap.hash_nt_password_hash(pw_hash)
    check(pw_hash_hash.hex().upper() == "41C00C584BD2D91C4017A2A12FA59F3F", "mschap: HashNtPasswordHash")
    master = mppe.get_master_key(pw_hash_hash, nt_response)
    check(master.hex().upper() == "FDECE3717A8C838CB388E527AE3CDD31", "mschap: GetMasterKey")
    send, recv = mppe.mppe_chap2_gen_keys(password, nt_response)
    check(send != recv and len(send) == 16 and len(recv) == 16, "mschap: start keys")
    # RFC 3079 3.5.3: SendStartKey128, the server's send key (MS-MPPE-Send-Key).
    check(send.hex().upper() == "8B7CDC149B993A1BA118CB153F56DCCB", f"mschap: send start key {send.hex()}")


def decrypt_mppe_key(value, secret, request_authenticator):
    """RFC 2548 2.4.2: Salt (2, high bit set) + String; returns the key (Key-Length bytes)."""
    check(len(value) >= 2 + 16 and (len(value) - 2) % 16 == 0, f"MPPE key attribute length {len(value)}")
    salt, cipher = value[:2], value[2:]
    check(salt[0] & 0x80, f"MPPE salt {salt.hex()} lacks its high bit")
    plain = b""
    prev = request_authenticator + salt
    for i in range(0, len(cipher), 16):
        b = hashlib.md5(secret + prev).digest()
        c = cipher[i : i + 16]
        plain += bytes(x ^ y for x, y in zip(c, b))
        prev = c
    key_len = plain[0]
    check(key_len <= len(plain) - 1, f"MPPE Key-Length {key_len} overflows")
    return salt, plain[1 : 1 + key_len]


def one(reply, name):
    values = reply.get(name)
    check(values, f"the reply has no {name} (attributes: {sorted(reply.keys())})")
    check(len(values) == 1, f"the reply has {len(values)} {name}")
    return values[0]


def login(client, user, password, ident):
    auth_chal = os.urandom(16)
    peer_chal = os.urandom(16)
    nt_response = mschap.generate_nt_response_mschap2(auth_chal, peer_chal, user, password)
    response = bytes([ident, 0]) + peer_chal + bytes(8) + nt_response
    assert len(response) == 50
    req = client.CreateAuthPacket(code=pyrad.packet.AccessRequest, User_Name=user)
    req["Service-Type"] = 2  # Framed-User
    req["Framed-Protocol"] = 1  # PPP
    req["MS-CHAP-Challenge"] = auth_chal
    req["MS-CHAP2-Response"] = response
    req.add_message_authenticator()
    try:
        reply = client.SendPacket(req)
    except Timeout:
        raise CheckFailed(f"no (valid) reply from the server for {user}")
    return req, reply, auth_chal, peer_chal, nt_response


def run(args):
    host, _, port = args.server.rpartition(":")
    if not host or not port.isdigit():
        print(f"error: --server must be HOST:PORT (got {args.server!r})", file=sys.stderr)
        return 2
    secret = args.secret.encode()
    dictionary = Dictionary(io.StringIO(DICTIONARY))
    client = Client(
        server=host,
        authport=int(port),
        secret=secret,
        dict=dictionary,
        retries=2,
        timeout=args.timeout,
        enforce_ma=not args.allow_missing_ma,
    )

    self_test()
    print("mschap: reproduces RFC 2759 9.2 and RFC 3079 3.5")

    ident = 0x5A
    req, reply, auth_chal, peer_chal, nt_response = login(client, args.user, args.password, ident)
    msg = reply.get("Reply-Message")
    check(
        reply.code == pyrad.packet.AccessAccept,
        f"expected Access-Accept for {args.user}, got code {reply.code} (Reply-Message {msg})",
    )
    print("Access-Accept; its Response Authenticator and Message-Authenticator (if any) verify")

    success = one(reply, "MS-CHAP2-Success")
    check(success[:1] == bytes([ident]), f"MS-CHAP2-Success identifier {success[:1].hex()} != {ident:02x}")
    expected = mschap.generate_authenticator_response(
        args.password, nt_response, peer_chal, auth_chal, args.user
    )
    expected = expected[expected.index("S=") :]
    got = success[1:].decode("latin1")
    check(got.startswith("S="), f"MS-CHAP2-Success {got!r} does not start with S=")
    check(got[:42] == expected, f"MS-CHAP2-Success {got!r}, expected {expected!r}")
    print(f"MS-CHAP2-Success {got[:42]} verifies")

    want_send, want_recv = mppe.mppe_chap2_gen_keys(args.password, nt_response)
    send_salt, send = decrypt_mppe_key(one(reply, "MS-MPPE-Send-Key"), secret, req.authenticator)
    recv_salt, recv = decrypt_mppe_key(one(reply, "MS-MPPE-Recv-Key"), secret, req.authenticator)
    check(send_salt != recv_salt, "MS-MPPE-Send-Key and MS-MPPE-Recv-Key share a salt (RFC 2548)")
    check(len(send) == 16, f"MS-MPPE-Send-Key is {len(send)} bytes")
    check(len(recv) == 16, f"MS-MPPE-Recv-Key is {len(recv)} bytes")
    check(send == want_send, f"MS-MPPE-Send-Key {send.hex()}, expected {want_send.hex()}")
    check(recv == want_recv, f"MS-MPPE-Recv-Key {recv.hex()}, expected {want_recv.hex()}")
    print("MS-MPPE-Send-Key and MS-MPPE-Recv-Key decrypt to the RFC 3079 keys")

    if not args.no_reject:
        _, reply, _, _, _ = login(client, args.user, args.password + "-wrong", ident + 1)
        check(
            reply.code == pyrad.packet.AccessReject,
            f"expected Access-Reject for a wrong password, got code {reply.code}",
        )
        check("MS-CHAP2-Success" not in reply, "a reject carries MS-CHAP2-Success")
        check("MS-MPPE-Send-Key" not in reply, "a reject carries MS-MPPE-Send-Key")
        print(f"wrong password: Access-Reject (Reply-Message {reply.get('Reply-Message')})")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="HOST:PORT of the RADIUS authentication listener")
    p.add_argument("--secret", required=True, help="the NAS's shared secret")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per try (2 tries)")
    p.add_argument(
        "--allow-missing-ma",
        action="store_true",
        help="accept replies without Message-Authenticator (servers older than the Blast-RADIUS fixes)",
    )
    p.add_argument("--no-reject", action="store_true", help="skip the wrong-password check")
    args = p.parse_args()
    try:
        return run(args)
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
