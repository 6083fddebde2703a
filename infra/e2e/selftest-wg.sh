#!/usr/bin/env bash
# ProxPanel SaaS: self-test of the real-peer WireGuard harness (wg-router.sh),
# without our relay.
#
#     infra/e2e/selftest-wg.sh          (as root; prints PASS at the end)
#
# Plays the relay with a second wireguard-go on the HOST (interface
# ppselftest0, listening on 0.0.0.0:<free UDP port>, no peer endpoints: it only
# responds, like the relay), so the routers reach it exactly as they reach the
# real relay: endpoint = host-side veth IP:port. Then:
#   - brings up routers a (command-line options) and b (--peer-json,
#     --keepalive 0); waits for both handshakes (b with --nudge); pings the relay tunnel address from each;
#   - sends a UDP datagram from each router through the tunnel to an echo
#     server on the relay's tunnel address and checks the reply (and the
#     source address the relay side saw);
#   - checks the relay side saw each router at ns-ip:listen-port;
#   - block/unblock, set-listen-port (roaming) and set-endpoint on router a;
#   - tears everything down and checks nothing is left.
# Knobs: PP_SELFTEST_NET (first three octets of the tunnel /24, default
# 10.200.254), PP_SELFTEST_PREFIX (prefix for the router names, default none).
set -euo pipefail

E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WGR="$E2E/wg-router.sh"
NET=${PP_SELFTEST_NET:-10.200.254}
PFX=${PP_SELFTEST_PREFIX:-}
A="${PFX}a"
B="${PFX}b"
RELAY_IF=ppselftest0
RELAY_TIP="$NET.1"

phase() { printf '==> selftest: %s\n' "$*" >&2; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root (network namespaces, veth, /dev/net/tun)"
"$E2E/install-wg.sh"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

TMP=$(mktemp -d /tmp/pp-wg-selftest.XXXXXX)
RELAY_PID=
ECHO_PID=
cleanup() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ]; then
        phase "failed (exit $rc); state before teardown:"
        for n in "$A" "$B"; do "$WGR" status "$n" >&2 2>&1; done
        wg show "$RELAY_IF" >&2 2>&1
        echo "--- relay wireguard-go log (tail)" >&2
        tail -n 20 "$TMP/relay.log" >&2 2>/dev/null
    fi
    "$WGR" down "$A" >/dev/null 2>&1
    "$WGR" down "$B" >/dev/null 2>&1
    [ -z "$ECHO_PID" ] || kill "$ECHO_PID" 2>/dev/null
    if [ -n "$RELAY_PID" ]; then
        kill "$RELAY_PID" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$RELAY_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$RELAY_PID" 2>/dev/null
    fi
    ip link del "$RELAY_IF" 2>/dev/null
    rm -f "/run/wireguard/$RELAY_IF.sock"
    rm -rf "$TMP"
}
trap cleanup EXIT

free_udp_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])'
}

# --- the relay side, on the host ---------------------------------------------
ip link show "$RELAY_IF" >/dev/null 2>&1 && fail "$RELAY_IF already exists (another selftest running, or a leftover: ip link del $RELAY_IF)"
if ip -4 route show | grep -q "^$NET\.0/24"; then
    fail "$NET.0/24 is already routed on this host; pick another with PP_SELFTEST_NET"
fi
for n in "$A" "$B"; do
    [ ! -d "/run/proxpanel-e2e/$n" ] || fail "router '$n' is already up (another selftest?); take it down with: $WGR down $n"
done

umask 077
wg genkey >"$TMP/relay.key"
RELAY_PUB=$(wg pubkey <"$TMP/relay.key")
A_PRIV=$(wg genkey)
A_PUB=$(printf '%s\n' "$A_PRIV" | wg pubkey)
B_PRIV=$(wg genkey)
B_PUB=$(printf '%s\n' "$B_PRIV" | wg pubkey)
umask 022
PORT=$(free_udp_port)

phase "relay side: wireguard-go $RELAY_IF on the host, udp 0.0.0.0:$PORT, tunnel $RELAY_TIP/24"
mkdir -p /run/wireguard
WG_PROCESS_FOREGROUND=1 LOG_LEVEL=verbose setsid wireguard-go "$RELAY_IF" </dev/null >"$TMP/relay.log" 2>&1 &
RELAY_PID=$!
for _ in $(seq 1 100); do
    [ -S "/run/wireguard/$RELAY_IF.sock" ] && break
    kill -0 "$RELAY_PID" 2>/dev/null || fail "relay-side wireguard-go exited: $(cat "$TMP/relay.log")"
    sleep 0.05
done
wg set "$RELAY_IF" private-key "$TMP/relay.key" listen-port "$PORT" \
    peer "$A_PUB" allowed-ips "$NET.2/32" \
    peer "$B_PUB" allowed-ips "$NET.3/32"
ip addr add "$RELAY_TIP/24" dev "$RELAY_IF"
ip link set "$RELAY_IF" mtu 1420 up

# --- the routers ---------------------------------------------------------------
phase "router $A via options"
"$WGR" up "$A" --private-key "$A_PRIV" --address "$NET.2/24" --relay-public-key "$RELAY_PUB" \
    --relay-tunnel-address "$RELAY_TIP" --relay-port "$PORT" --keepalive 25 >"$TMP/a.up"
cat "$TMP/a.up"

phase "router $B via --peer-json, no keepalive (its handshake needs wait-handshake --nudge)"
cat >"$TMP/b.json" <<EOF
{"private_key": "$B_PRIV", "tunnel_address": "$NET.3/24", "relay_public_key": "$RELAY_PUB",
 "relay_tunnel_address": "$RELAY_TIP", "relay_endpoint_port": $PORT}
EOF
"$WGR" up "$B" --peer-json "$TMP/b.json" --keepalive 0 >"$TMP/b.up"
cat "$TMP/b.up"

grep -qx "public_key=$A_PUB" "$TMP/a.up" || fail "up $A printed the wrong public key"
grep -qx "public_key=$B_PUB" "$TMP/b.up" || fail "up $B printed the wrong public key"
A_HOST=$("$WGR" host-ip "$A")
A_NS=$("$WGR" ns-ip "$A")
B_HOST=$("$WGR" host-ip "$B")
B_NS=$("$WGR" ns-ip "$B")
[ "$A_HOST" != "$B_HOST" ] || fail "routers $A and $B got the same veth subnet ($A_HOST)"
grep -qx "endpoint=$A_HOST:$PORT" "$TMP/a.up" || fail "router $A's endpoint is not host-veth-ip:port"

phase "waiting for the handshakes"
T0=$(date +%s.%N)
"$WGR" wait-handshake "$A" --timeout 20 >/dev/null
"$WGR" exec "$B" -- wg show wg0 latest-handshakes | grep -q '	0$' || fail "$B handshook without traffic or keepalive?"
"$WGR" wait-handshake "$B" --timeout 20 --nudge >/dev/null
T1=$(date +%s.%N)
phase "both handshakes done $(python3 -c "print('%.2f' % ($T1 - $T0))") s after the routers were up"

phase "relay side sees each router at its namespace address"
wg show "$RELAY_IF" endpoints | tee "$TMP/endpoints" >&2
grep -q "^$A_PUB	$A_NS:$("$WGR" info "$A" | sed -n 's/^listen_port=//p')\$" "$TMP/endpoints" || fail "relay side does not see $A at $A_NS"
grep -q "^$B_PUB	$B_NS:" "$TMP/endpoints" || fail "relay side does not see $B at $B_NS"

phase "ping the relay tunnel address from both routers"
for n in "$A" "$B"; do
    "$WGR" exec "$n" -- ping -c 3 -i 0.2 -W 2 -q "$RELAY_TIP" >&2 || fail "ping $RELAY_TIP from $n failed"
done

phase "UDP through the tunnel: router -> relay side -> router"
ECHO_PORT=$(free_udp_port)
# Echo server on the relay's tunnel address: replies "echo <source ip> <payload>";
# bounded in count (8 datagrams) and time (60 s).
python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(60)
for _ in range(8):
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        break
    s.sendto(b"echo " + addr[0].encode() + b" " + data, addr)
' "$RELAY_TIP" "$ECHO_PORT" &
ECHO_PID=$!
sleep 0.3
udp_roundtrip() { # ROUTER EXPECTED_SOURCE
    local out
    out=$("$WGR" exec "$1" -- python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
msg = ("hello from " + sys.argv[3]).encode()
for attempt in range(3):
    s.sendto(msg, (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode()); break
    except socket.timeout:
        continue
else:
    sys.exit("no UDP reply from %s:%s" % (sys.argv[1], sys.argv[2]))
' "$RELAY_TIP" "$ECHO_PORT" "$1") || fail "UDP round trip from $1 failed"
    printf '    %s: %s\n' "$1" "$out" >&2
    [ "$out" = "echo $2 hello from $1" ] || fail "unexpected UDP reply to $1: '$out' (want 'echo $2 hello from $1')"
}
udp_roundtrip "$A" "$NET.2"
udp_roundtrip "$B" "$NET.3"

phase "block / unblock router $A"
"$WGR" block "$A"
if "$WGR" exec "$A" -- ping -c 1 -W 1 -q "$RELAY_TIP" >/dev/null 2>&1; then
    fail "ping from blocked router $A got through"
fi
"$WGR" exec "$B" -- ping -c 1 -W 2 -q "$RELAY_TIP" >/dev/null || fail "blocking $A broke $B"
"$WGR" unblock "$A"
"$WGR" exec "$A" -- ping -c 1 -W 3 -q "$RELAY_TIP" >/dev/null || fail "ping from $A failed after unblock"

phase "roaming: router $A changes its UDP source port"
NEWPORT=$("$WGR" set-listen-port "$A" 0)
"$WGR" exec "$A" -- ping -c 1 -W 3 -q "$RELAY_TIP" >/dev/null || fail "ping from $A failed after changing its port"
wg show "$RELAY_IF" endpoints | grep -q "^$A_PUB	$A_NS:$NEWPORT\$" || fail "relay side did not follow $A to port $NEWPORT"
echo "    relay side now sees $A at $A_NS:$NEWPORT" >&2

phase "set-endpoint: router $A re-targets the relay (same port, given as PORT)"
"$WGR" set-endpoint "$A" "$PORT"
"$WGR" exec "$A" -- wg show wg0 endpoints | grep -q "	$A_HOST:$PORT\$" || fail "set-endpoint did not take"

phase "status"
"$WGR" status "$A" >&2

phase "teardown"
"$WGR" down "$A"
"$WGR" down "$B"
"$WGR" down "$A" # idempotent
for n in "$A" "$B"; do
    [ ! -e "/run/netns/pp-$n" ] || fail "netns pp-$n still exists after down"
    [ ! -d "/run/proxpanel-e2e/$n" ] || fail "state of $n still exists after down"
done
ip -o addr show | grep -q -E " ($A_HOST|$B_HOST)/30 " && fail "a host-side veth is still there after down"
kill "$ECHO_PID" 2>/dev/null || true
ECHO_PID=
trap - EXIT
cleanup
ip link show "$RELAY_IF" >/dev/null 2>&1 && fail "$RELAY_IF still exists"
echo PASS
