#!/usr/bin/env python3
"""Drives a RouterOS API server (our simulator) with a client we did not write (librouteros).

    python3 infra/e2e/routeros_librouteros.py --port N --user U --password P [--host H] [--tls] [--legacy-login]

Logs in (the >= 6.43 style, or the pre-6.43 MD5 challenge with --legacy-login), over API-SSL with
--tls (certificate not verified: the router's is self-signed), then checks: /system/identity and
/system/resource print, /ppp/active print (a session "alice" at 100.64.0.7), /queue/simple and
/interface print with byte counters, a query, an address-list add/print/remove, a !trap for an
unknown command, and kicks alice with /ppp/active/remove. Exit codes: 0 success, 1 a check failed,
3 librouteros is missing.
"""

import argparse
import ssl
import sys

try:
    import librouteros
    from librouteros.exceptions import TrapError
    from librouteros.login import plain, token
    from librouteros.query import Key
except ImportError as e:  # pragma: no cover - environment problem
    print(f"error: librouteros is not installed ({e}); python3 -m pip install librouteros", file=sys.stderr)
    sys.exit(3)


def check(cond, what):
    if not cond:
        print(f"check failed: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--legacy-login", action="store_true")
    a = ap.parse_args()

    kwargs = {"port": a.port, "login_method": token if a.legacy_login else plain, "timeout": 10}
    if a.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        kwargs["ssl_wrapper"] = lambda sock: ctx.wrap_socket(sock, server_hostname=a.host)
    api = librouteros.connect(a.host, a.user, a.password, **kwargs)

    ident = list(api.path("system", "identity"))
    check(len(ident) == 1 and ident[0].get("name"), f"identity: {ident}")
    res = list(api.path("system", "resource"))
    check(res and str(res[0].get("version", "")).startswith("7."), f"resource: {res}")

    active = list(api.path("ppp", "active"))
    alice = [s for s in active if s.get("name") == "alice"]
    check(len(alice) == 1 and alice[0].get("address") == "100.64.0.7", f"ppp active: {active}")

    queues = list(api.path("queue", "simple"))
    check(any(q.get("name") == "<pppoe-alice>" and q.get("bytes") == "1000/2000" for q in queues), f"queues: {queues}")
    ifaces = list(api.path("interface"))
    check(any(i.get("name") == "<pppoe-alice>" and i.get("rx-byte") == 1000 for i in ifaces), f"interfaces: {ifaces}")

    # A query (?name=alice) and a proplist (=.proplist=.id,name).
    name, ident_key = Key("name"), Key(".id")
    q = list(api.path("ppp", "active").select(ident_key, name).where(name == "alice"))
    check(len(q) == 1 and set(q[0]) <= {".id", "name"}, f"query: {q}")

    lists = api.path("ip", "firewall", "address-list")
    new_id = lists.add(list="proxpanel-fup", address="100.64.0.7", comment="librouteros")
    check(str(new_id).startswith("*"), f"add returned {new_id!r}")
    entries = [e for e in lists if e.get("list") == "proxpanel-fup"]
    check(len(entries) == 1 and entries[0].get("address") == "100.64.0.7", f"address list: {entries}")
    lists.remove(new_id)
    check(not [e for e in lists if e.get("list") == "proxpanel-fup"], "address list entry removed")

    try:
        tuple(api("/no/such/command"))
        check(False, "unknown command did not trap")
    except TrapError as e:
        check("no such command" in str(e), f"trap message: {e}")

    api.path("ppp", "active").remove(alice[0][".id"])
    check(not [s for s in api.path("ppp", "active") if s.get("name") == "alice"], "alice kicked")
    api.close()
    print("ok")


if __name__ == "__main__":
    main()
