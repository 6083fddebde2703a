#!/usr/bin/env bash
# shellcheck shell=bash
#
# ProxPanel SaaS: WireGuard relay benchmark, in one run (~3-4 min plus the release builds).
#
#     sudo infra/bench/relay.sh
#     sudo REPS=5 REQUESTS=20000 infra/bench/relay.sh
#     sudo SKIP_BUILD=1 infra/bench/relay.sh     # reuse the release binaries
#
# Prints one table: figure, ours, the peer compared (direct RADIUS / wireguard-go / the target),
# the ratio and the target. What each figure is:
#
#   1. CPU per RADIUS request, tunnel vs direct (target ≤ 1.25×). One `proxpanel serve`
#      (SQLite data dir, roles relay,radius, tenant RADIUS limit and WireGuard handshake limits
#      off) with one tenant, USERS subscribers (`subscriber import`), a direct NAS 127.0.0.1 and
#      a tunnel NAS whose peer is a real wireguard-go router (infra/e2e/wg-router.sh). The same
#      generator (`proxpanel dev radius-load --requests REQUESTS`, PAP Access-Requests,
#      CONCURRENCY outstanding) runs first on the host against the RADIUS listener, then inside
#      the router's namespace against 10.200.0.1:1812 through the tunnel; REPS times each,
#      alternating, after an unmeasured warm-up of both paths (subscriber cache filled). Only the
#      serve process's CPU time (utime+stime of all its threads, /proc/PID/stat) counts: the
#      client-side wireguard-go and the generator share the cores, so throughput is not compared.
#      Reported: serve CPU ms per 10,000 accepted requests, summed over the reps.
#   2. Handshakes/s on one core. The bench binary (relay/examples/relay_bench.rs) pre-computes
#      HS_PEERS × HS_ROUNDS initiations from synthetic boringtun clients (keys from a seed, every
#      round a fresh initiation of every peer) and sends them over UDP on loopback, HS_WINDOW
#      unanswered at a time (below wireguard-go's "under load" threshold of 128 queued
#      handshakes, so neither side answers with cookies), counting handshake responses per
#      second. Responders, each pinned to CPU 1 with taskset (the sender runs on CPU 0):
#        ours: `relay_bench responder` = `RelayHandle` (the tokio shell `proxpanel serve` runs)
#              on a current-thread runtime, the same HS_PEERS peers configured;
#        peer: wireguard-go (userspace, interface ppbenchwg0 on the host) with the same private
#              key and the same HS_PEERS peers (`wg setconf`).
#      Also reported: responses per CPU-second of the responder, and our `Relay::on_datagram`
#      alone in-process on one thread (no sockets), which has no peer.
#   3. Resident memory per configured peer, beyond a fixed base (the process with the relay and
#      one warm-up peer): `relay_bench memory N` for N = 10,000 and 100,000 (a fresh process
#      each) loads N peers into a `Relay` (never connected; VmRSS growth / N), then completes a
#      handshake with each from a synthetic boringtun client dropped right after (connected,
#      a live `Tunn` per peer; VmRSS growth / N). Targets: ≤ 2 KiB and ≤ 16 KiB per peer.
#
# Knobs (environment):
#   REQUESTS=10000       Access-Requests per measured phase
#   REPS=3               measured direct/tunnel pairs (CPU summed over them)
#   CONCURRENCY=16       requests outstanding in the generator
#   USERS=10000          subscribers user00001 … (password "password")
#   HS_PEERS=2000 HS_ROUNDS=10 HS_WINDOW=32   handshake benchmark shape
#   MEM_PEERS="10000 100000"                  peer counts of the memory figures
#   PROXPANEL_BIN=…      use this proxpanel binary; RELAY_BENCH_BIN=… this relay_bench binary
#   SKIP_BUILD=1         do not run cargo (the release binaries in $CARGO_TARGET_DIR or target/)
#   QUIET_IDLE=80 QUIET_WAIT=60   before each part wait (at most QUIET_WAIT s) until the CPUs are
#                        at least QUIET_IDLE % idle; the idle % seen is printed with the table
#   KEEP=1               keep the scratch directory (serve log, data dir)
#   BENCH_TMPDIR=/tmp    parent of the scratch directory
#
# Needs root (network namespaces, TUN), wireguard-go and wg (infra/e2e/install-wg.sh), taskset,
# python3, ss, and 2 CPUs for the pinning (with 1 CPU everything runs on CPU 0).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HARNESS="$ROOT/infra/e2e/wg-router.sh"

REQUESTS=${REQUESTS:-10000}
REPS=${REPS:-3}
CONCURRENCY=${CONCURRENCY:-16}
USERS=${USERS:-10000}
HS_PEERS=${HS_PEERS:-2000}
HS_ROUNDS=${HS_ROUNDS:-10}
HS_WINDOW=${HS_WINDOW:-32}
MEM_PEERS=${MEM_PEERS:-"10000 100000"}
SKIP_BUILD=${SKIP_BUILD:-0}
QUIET_IDLE=${QUIET_IDLE:-80}
QUIET_WAIT=${QUIET_WAIT:-60}
KEEP=${KEEP:-0}
SECRET=bench-secret
PASSWORD=password
SEED=7
WGIF=ppbenchwg0
ROUTER="relaybench$$"

# shellcheck source=infra/bench/lib.sh
. "$ROOT/infra/bench/lib.sh"

PIDS=()
WORK=
cleanup() {
    local rc=$? pid
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid" 50
    done
    "$HARNESS" down "$ROUTER" >/dev/null 2>&1
    ip link del "$WGIF" >/dev/null 2>&1
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf -- "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# --- prerequisites --------------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, TUN devices)"
for v in REQUESTS REPS CONCURRENCY USERS HS_PEERS HS_ROUNDS HS_WINDOW QUIET_IDLE QUIET_WAIT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number"
done
for t in wireguard-go wg taskset python3 ss ip; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found (infra/e2e/install-wg.sh installs the WireGuard tools)"
done
if [ "$(nproc)" -ge 2 ]; then CPU_LOAD=0 CPU_RESP=1; else CPU_LOAD=0 CPU_RESP=0; fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PP=${PROXPANEL_BIN:-$TARGET_DIR/release/proxpanel}
RB=${RELAY_BENCH_BIN:-$TARGET_DIR/release/examples/relay_bench}
if [ "$SKIP_BUILD" != 1 ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found (set PROXPANEL_BIN and RELAY_BENCH_BIN, SKIP_BUILD=1)"
    if [ -z "${PROXPANEL_BIN:-}" ]; then
        log "building proxpanel (cargo build --release -p proxpanel --bin proxpanel)"
        (cd "$ROOT" && cargo build --release -p proxpanel --bin proxpanel) || die "cargo build failed"
    fi
    if [ -z "${RELAY_BENCH_BIN:-}" ]; then
        log "building relay_bench (cargo build --release -p relay --example relay_bench)"
        (cd "$ROOT" && cargo build --release -p relay --example relay_bench) || die "cargo build failed"
    fi
fi
[ -x "$PP" ] || die "$PP is not an executable"
[ -x "$RB" ] || die "$RB is not an executable"
"$PP" dev radius-load --help 2>/dev/null | grep -q -- --requests || die "$PP has no \`dev radius-load --requests\`"

WORK=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/proxpanel-relay-bench.XXXXXX") || die "mktemp failed"
chmod 755 "$WORK"
HZ=$(getconf CLK_TCK)

free_udp_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])'
}
free_tcp_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# CPU ticks (user + system, all threads) of a running process.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# wait_quiet PART: until the machine is QUIET_IDLE % idle (at most QUIET_WAIT s); records the
# idle % seen for the table.
IDLE_NOTE=
wait_quiet() {
    local idle
    idle=$(quiet_idle)
    IDLE_NOTE+="$1 ${idle}%, "
}
# kv FILE KEY: the value of a key=value line.
kv() { sed -n "s/^$2=//p" "$1" | tail -1; }
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

ROWS="$WORK/rows.tsv"
: >"$ROWS"
# row FIGURE OURS PEER_LABEL PEER RATIO TARGET
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$ROWS"; }
calc() { python3 -c "print($1)"; }

# --- 1. CPU per RADIUS request: direct vs through the tunnel --------------------------------

export PROXPANEL_DATA_DIR="$WORK/pp-data"
export PROXPANEL_LOG=warn
unset PROXPANEL_DATABASE_URL PROXPANEL_DATABASE_ADMIN_URL PROXPANEL_DATABASE_SYSTEM_URL \
    PROXPANEL_REDIS_URL PROXPANEL_CONFIG PROXPANEL_SECRET_KEY
mkdir -p "$PROXPANEL_DATA_DIR"
WGP=$(free_udp_port)
AUTHP=$(free_udp_port)
ACCTP=$(free_udp_port)
ADMINP=$(free_tcp_port)
export PROXPANEL_WG_LISTEN="0.0.0.0:$WGP"

log "proxpanel (SQLite): tenant, direct NAS 127.0.0.1, tunnel NAS with a peer, $USERS subscribers"
"$PP" migrate >/dev/null || die "proxpanel migrate failed"
"$PP" tenant create --slug bench --name Bench --owner-email owner@bench.test \
    --owner-password 'bench-owner-password' --max-subscribers 1000000 >/dev/null \
    || die "proxpanel tenant create failed"
"$PP" nas add --tenant bench --name direct --ip 127.0.0.1 --secret "$SECRET" >/dev/null \
    || die "proxpanel nas add (direct) failed"
"$PP" nas add --tenant bench --name tunnel --tunnel --secret "$SECRET" >/dev/null \
    || die "proxpanel nas add (tunnel) failed"
"$PP" peer add --tenant bench --nas tunnel --json >"$WORK/peer.json" || die "proxpanel peer add failed"
python3 - "$USERS" "$PASSWORD" >"$WORK/users.csv" <<'EOF'
import sys
print("username,password")
for n in range(1, int(sys.argv[1]) + 1):
    print(f"user{n:05d},{sys.argv[2]}")
EOF
"$PP" subscriber import --tenant bench --file "$WORK/users.csv" >/dev/null 2>"$WORK/import.err" \
    || { head -20 "$WORK/import.err" >&2; die "proxpanel subscriber import failed"; }

log "proxpanel serve (relay,radius) RADIUS 127.0.0.1:$AUTHP, WireGuard 0.0.0.0:$WGP, limits off"
PROXPANEL_ROLES=relay,radius PROXPANEL_RADIUS_AUTH_LISTEN="127.0.0.1:$AUTHP" \
    PROXPANEL_RADIUS_ACCT_LISTEN="127.0.0.1:$ACCTP" PROXPANEL_RADIUS_TENANT_RPS=0 \
    PROXPANEL_WG_HANDSHAKE_RATE=0 PROXPANEL_WG_SOURCE_HANDSHAKE_RATE=0 \
    PROXPANEL_WG_TENANT_HANDSHAKE_RATE=0 PROXPANEL_ADMIN_LISTEN="127.0.0.1:$ADMINP" \
    PROXPANEL_HTTP_LISTEN=off PROXPANEL_DNS_LISTEN=off \
    "$PP" serve >"$WORK/serve.log" 2>&1 &
SERVE=$!
PIDS+=("$SERVE")
wait_udp_for 300 "$SERVE" "$AUTHP" "$WGP" || { tail -30 "$WORK/serve.log" >&2; die "serve did not start listening"; }

log "router namespace $ROUTER (wireguard-go) → relay"
"$HARNESS" up "$ROUTER" --peer-json "$WORK/peer.json" --relay-port "$WGP" >"$WORK/router.txt" 2>"$WORK/router.err" \
    || { cat "$WORK/router.err" >&2; die "wg-router.sh up failed"; }
"$HARNESS" wait-handshake "$ROUTER" --timeout 20 --nudge >/dev/null \
    || { tail -30 "$WORK/serve.log" >&2; die "the router completed no handshake with the relay"; }

# load WHERE(direct|tunnel) N OUT: N Access-Requests, JSON result in OUT.
load() {
    local where=$1 n=$2 out=$3
    local args=(dev radius-load --secret "$SECRET" --users "$USERS" --password "$PASSWORD"
        --concurrency "$CONCURRENCY" --requests "$n" --duration 600 --mode auth --json)
    if [ "$where" = direct ]; then
        "$PP" "${args[@]}" --target "127.0.0.1:$AUTHP" >"$out" 2>"$out.err"
    else
        "$HARNESS" exec "$ROUTER" -- "$PP" "${args[@]}" --target 10.200.0.1:1812 >"$out" 2>"$out.err"
    fi || die "$where load failed: $(cat "$out.err" "$out")"
    local ok
    ok=$(json_field "$out" ok)
    [ "$ok" -ge $((n * 99 / 100)) ] || die "$where load: only $ok of $n Access-Accepts: $(cat "$out")"
}

log "warm-up: $USERS direct + $USERS tunnel requests (unmeasured; fills the subscriber cache)"
load direct "$USERS" "$WORK/warm-direct.json"
load tunnel "$USERS" "$WORK/warm-tunnel.json"

wait_quiet RADIUS
declare -A TICKS=([direct]=0 [tunnel]=0) OKS=([direct]=0 [tunnel]=0) RPS=([direct]="" [tunnel]="")
for rep in $(seq 1 "$REPS"); do
    for where in direct tunnel; do
        t0=$(proc_ticks "$SERVE")
        load "$where" "$REQUESTS" "$WORK/$where-$rep.json"
        t1=$(proc_ticks "$SERVE")
        ok=$(json_field "$WORK/$where-$rep.json" ok)
        TICKS[$where]=$((TICKS[$where] + t1 - t0))
        OKS[$where]=$((OKS[$where] + ok))
        RPS[$where]+="$(json_field "$WORK/$where-$rep.json" rps) "
        log "rep $rep $where: $REQUESTS requests, $ok accepted, serve CPU $(calc "round(($t1 - $t0) / $HZ, 2)") s, $(json_field "$WORK/$where-$rep.json" rps) req/s"
    done
done
MS_DIRECT=$(calc "round(${TICKS[direct]} / $HZ * 1e3 * 10000 / ${OKS[direct]})")
MS_TUNNEL=$(calc "round(${TICKS[tunnel]} / $HZ * 1e3 * 10000 / ${OKS[tunnel]})")
row "serve CPU ms per 10,000 Access-Requests" "$MS_TUNNEL (tunnel)" "direct" "$MS_DIRECT" \
    "$(calc "round($MS_TUNNEL / $MS_DIRECT, 2)")×" "≤ 1.25×"
NOTE_RPS="req/s (generator, shared cores; not compared): direct ${RPS[direct]}| tunnel ${RPS[tunnel]}"
stop_pid "$SERVE" 50
"$HARNESS" down "$ROUTER" >/dev/null 2>&1 || true

# --- 2. handshakes/s on one core ------------------------------------------------------------

# blast_at PORT PID OUT: the handshake blast against 127.0.0.1:PORT, responder PID's CPU.
blast_at() {
    local port=$1 pid=$2 out=$3 t0 t1
    t0=$(proc_ticks "$pid")
    taskset -c "$CPU_LOAD" "$RB" blast "127.0.0.1:$port" "$HS_PEERS" "$HS_ROUNDS" "$HS_WINDOW" "$SEED" >"$out" \
        || die "blast against 127.0.0.1:$port failed"
    t1=$(proc_ticks "$pid")
    echo "cpu_s=$(calc "($t1 - $t0) / $HZ")" >>"$out"
}

wait_quiet handshakes
log "handshakes: ours (RelayHandle, current-thread runtime, CPU $CPU_RESP), $HS_PEERS peers × $HS_ROUNDS rounds, window $HS_WINDOW"
HSP=$(free_udp_port)
taskset -c "$CPU_RESP" "$RB" responder "127.0.0.1:$HSP" "$HS_PEERS" "$SEED" >"$WORK/responder.txt" 2>&1 &
RESP=$!
PIDS+=("$RESP")
wait_udp_for 300 "$RESP" "$HSP" || die "relay_bench responder did not start"
for _ in $(seq 1 100); do grep -q ready=1 "$WORK/responder.txt" && break; sleep 0.1; done
blast_at "$HSP" "$RESP" "$WORK/hs-ours.txt"
stop_pid "$RESP" 50

log "handshakes: wireguard-go ($WGIF on the host, CPU $CPU_RESP), the same peers and initiations"
ip link del "$WGIF" >/dev/null 2>&1 || true
WGGP=$(free_udp_port)
"$RB" wg-config "$HS_PEERS" "$SEED" "$WGGP" >"$WORK/wg.conf"
LOG_LEVEL=error taskset -c "$CPU_RESP" wireguard-go -f "$WGIF" >"$WORK/wireguard-go.log" 2>&1 &
WGGO=$!
PIDS+=("$WGGO")
for _ in $(seq 1 100); do [ -S "/run/wireguard/$WGIF.sock" ] && break; sleep 0.1; done
wg setconf "$WGIF" "$WORK/wg.conf" || die "wg setconf failed"
ip link set "$WGIF" up
wait_udp_for 300 "$WGGO" "$WGGP" || die "wireguard-go is not listening on $WGGP"
blast_at "$WGGP" "$WGGO" "$WORK/hs-wg.txt"
stop_pid "$WGGO" 50
ip link del "$WGIF" >/dev/null 2>&1 || true

for f in ours wg; do
    c=$(kv "$WORK/hs-$f.txt" cookies)
    l=$(kv "$WORK/hs-$f.txt" lost)
    if [ "$c" != 0 ] || [ "$l" != 0 ]; then
        log "warning: $f: $c cookie replies, $l initiations unanswered"
    fi
done
HS_OURS=$(kv "$WORK/hs-ours.txt" handshakes_per_s)
HS_WG=$(kv "$WORK/hs-wg.txt" handshakes_per_s)
row "handshakes/s, UDP, responder pinned to 1 core" "$HS_OURS" "wireguard-go" "$HS_WG" \
    "$(calc "round($HS_OURS / $HS_WG, 2)")×" "-"
CPU_OURS=$(calc "round($(kv "$WORK/hs-ours.txt" responses) / max(1e-9, $(kv "$WORK/hs-ours.txt" cpu_s)))")
CPU_WG=$(calc "round($(kv "$WORK/hs-wg.txt" responses) / max(1e-9, $(kv "$WORK/hs-wg.txt" cpu_s)))")
row "handshakes per responder CPU-second" "$CPU_OURS" "wireguard-go" "$CPU_WG" \
    "$(calc "round($CPU_OURS / $CPU_WG, 2)")×" "-"

log "handshakes: Relay::on_datagram in-process, one thread (CPU $CPU_RESP)"
taskset -c "$CPU_RESP" "$RB" inproc "$HS_PEERS" "$HS_ROUNDS" >"$WORK/hs-inproc.txt" || die "relay_bench inproc failed"
row "handshakes/s, in-process on_datagram, 1 thread" "$(kv "$WORK/hs-inproc.txt" handshakes_per_s)" "-" "-" "-" "-"

# --- 3. memory per peer ---------------------------------------------------------------------

wait_quiet memory
for n in $MEM_PEERS; do
    log "memory: $n peers (never connected, then connected)"
    "$RB" memory "$n" >"$WORK/mem-$n.txt" || die "relay_bench memory $n failed"
    never=$(kv "$WORK/mem-$n.txt" never_bytes_per_peer)
    conn=$(kv "$WORK/mem-$n.txt" connected_bytes_per_peer)
    base=$(kv "$WORK/mem-$n.txt" base_kib)
    row "RSS B/peer, $n never connected (base $base KiB)" "$never" "target" 2048 \
        "$(calc "round($never / 2048, 2)")×" "≤ 2 KiB"
    row "RSS B/peer, $n connected" "$conn" "target" 16384 \
        "$(calc "round($conn / 16384, 2)")×" "≤ 16 KiB"
done

# --- table ----------------------------------------------------------------------------------

echo
echo "ProxPanel relay benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r), $(wireguard-go --version 2>/dev/null | head -1)"
echo "RADIUS: $REPS × $REQUESTS PAP Access-Requests per path, concurrency $CONCURRENCY, $USERS users, SQLite; handshakes: $HS_PEERS peers × $HS_ROUNDS rounds, window $HS_WINDOW"
python3 - "$ROWS" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
head = ["figure", "ours", "compared with", "theirs", "ratio", "target"]
w = [max(len(r[i]) for r in rows + [head]) for i in range(6)]
line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))
print(line(head))
print("  ".join("-" * x for x in w))
for r in rows:
    print(line(r))
EOF
echo "$NOTE_RPS"
echo "CPU idle before each part (other work on the box skews wall-clock figures): ${IDLE_NOTE%, }"
echo "(ratio: ours / theirs; for memory: ours / target. CPU: utime+stime of proxpanel serve, summed over the reps, scaled to 10,000 accepted requests.)"
