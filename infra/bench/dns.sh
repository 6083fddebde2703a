#!/usr/bin/env bash
# shellcheck shell=bash
#
# ProxPanel SaaS: DNS benchmark against NSD on this machine, same zone, same queries, one run.
#
#     sudo infra/bench/dns.sh               # ~1 min plus the release build
#     sudo SECS=10 REPS=3 infra/bench/dns.sh
#
# What it does (everything under one scratch directory, removed at the end):
#   1. installs what is missing with apt-get (root only): nsd, dnsperf, dnsutils;
#   2. builds `proxpanel` in release (`cargo build --release`, into $CARGO_TARGET_DIR when set);
#   3. makes the zone saas.test with TENANTS tenants t00001 … (10,000 by default): the SaaS store
#      (SQLite; `proxpanel migrate`, then the tenant rows written in one transaction with
#      python3's sqlite3, because creating 10,000 tenants through the CLI takes many minutes of
#      password hashing that the benchmark is not about), and the same names as an NSD zone file:
#      SOA, NS ns1 + glue, apex and operator A 192.0.2.10, every tenant `tNNNNN A 192.0.2.10` and
#      `tNNNNN.relay A 198.51.100.7`, i.e. exactly what `proxpanel serve --roles dns` generates;
#   4. NSD 4 from a private config (127.0.0.1:$NSD_PORT, no chroot, `refuse-any: yes`) with its
#      response-rate limiting switched off (`rrl-ratelimit: 0`, Debian's default is 200, see
#      shared/reference/baseline-bench.md), and ours with PROXPANEL_DNS_RRL=0;
#   5. checks both answer a tenant, a relay name and an unknown name the same way (dig);
#   6. one query file for both, shuffled: QUERIES lines, 60 % tenant names (A), 20 % relay names
#      (A), 20 % unknown names (A, NXDOMAIN, from 2,000 random labels);
#   7. `dnsperf -s 127.0.0.1 -p PORT -d FILE -l SECS -c 8 -T 1 -q 256` against each, REPS times
#      (median), alternating; prints QPS side by side and our ratio to NSD.
#
# Knobs (environment):
#   SECS=10 REPS=1 TENANTS=10000 QUERIES=100000 NSD_PORT=5300 PP_PORT=5301
#   DNSPERF_ARGS="-c 8 -T 1 -q 256"
#   PROXPANEL_BIN=…   use this binary;   SKIP_BUILD=1   do not run cargo
#   KEEP=1            keep the scratch directory;   BENCH_TMPDIR=/tmp
#   QUIET_IDLE=80 QUIET_WAIT=60   wait for an idle machine before each measurement
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=infra/bench/lib.sh
. "$ROOT/infra/bench/lib.sh"

SECS=${SECS:-10}
REPS=${REPS:-1}
TENANTS=${TENANTS:-10000}
QUERIES=${QUERIES:-100000}
NSD_PORT=${NSD_PORT:-5300}
PP_PORT=${PP_PORT:-5301}
DNSPERF_ARGS=${DNSPERF_ARGS:-"-c 8 -T 1 -q 256"}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}
QUIET_IDLE=${QUIET_IDLE:-80}
QUIET_WAIT=${QUIET_WAIT:-60}
BASE=saas.test
INGRESS=192.0.2.10
RELAY=198.51.100.7

# --- tools -------------------------------------------------------------------
need=()
command -v nsd >/dev/null 2>&1 || [ -x /usr/sbin/nsd ] || need+=(nsd)
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
if [ "${#need[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}: run as root (apt-get install) or install them"
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
NSD=$(command -v nsd || echo /usr/sbin/nsd)

if [ -n "${PROXPANEL_BIN:-}" ]; then
    BIN=$PROXPANEL_BIN
else
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    BIN=$TARGET/release/proxpanel
    if [ "$SKIP_BUILD" != 1 ]; then
        log "building proxpanel (release)"
        (cd "$ROOT" && cargo build --release --bin proxpanel)
    fi
fi
[ -x "$BIN" ] || die "$BIN not found (build it, or set PROXPANEL_BIN)"
# proxpanel refuses PROXPANEL_* variables it does not know.
unset PROXPANEL_BIN

WORK=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/pp-dns-bench.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p" 50; done
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- the zone ----------------------------------------------------------------
export PROXPANEL_DATA_DIR=$WORK/pp PROXPANEL_LOG=warn PROXPANEL_BASE_DOMAIN=$BASE
export PROXPANEL_INGRESS_ADDRS=$INGRESS PROXPANEL_DNS_NAMESERVERS="ns1.$BASE=$INGRESS"
export PROXPANEL_WG_PUBLIC_ENDPOINT="$RELAY:51820" PROXPANEL_DNS_RRL=0
export PROXPANEL_ROLES=dns PROXPANEL_ADMIN_LISTEN=off PROXPANEL_DNS_LISTEN="127.0.0.1:$PP_PORT"
"$BIN" migrate >/dev/null
log "writing $TENANTS tenants"
python3 - "$PROXPANEL_DATA_DIR" "$TENANTS" "$WORK" "$BASE" "$INGRESS" "$RELAY" "$QUERIES" <<'PY'
import glob, os, random, sqlite3, sys, uuid, datetime
data, n, work, base, ingress, relay, nq = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
db = [p for p in glob.glob(os.path.join(data, "*.db")) + glob.glob(os.path.join(data, "*.sqlite*")) if not p.endswith(("-wal", "-shm"))][0]
now = datetime.datetime.now(datetime.timezone.utc).isoformat()
con = sqlite3.connect(db)
con.executemany(
    "INSERT INTO tenants (id, slug, name, status, timezone, max_subscribers, max_nas, tunnel_subnet, created_at, updated_at) VALUES (?, ?, ?, 'active', 'UTC', 1000, 10, '10.200.0.0/24', ?, ?)",
    [(uuid.uuid4().bytes, f"t{i:05d}", f"Tenant {i}", now, now) for i in range(1, n + 1)])
con.commit()
with open(os.path.join(work, "saas.test.zone"), "w") as z:
    z.write(f"$ORIGIN {base}.\n$TTL 300\n")
    z.write(f"@ 3600 IN SOA ns1.{base}. hostmaster.{base}. 1 3600 600 1209600 60\n@ 3600 IN NS ns1.{base}.\n")
    z.write(f"ns1 3600 IN A {ingress}\n@ IN A {ingress}\noperator IN A {ingress}\n")
    for i in range(1, n + 1):
        z.write(f"t{i:05d} IN A {ingress}\nt{i:05d}.relay IN A {relay}\n")
rnd = random.Random(7)
unknown = [f"u{rnd.getrandbits(40):010x}.{base}" for _ in range(2000)]
with open(os.path.join(work, "queries.txt"), "w") as q:
    for _ in range(nq):
        r = rnd.random()
        t = rnd.randint(1, n)
        if r < 0.6:
            q.write(f"t{t:05d}.{base} A\n")
        elif r < 0.8:
            q.write(f"t{t:05d}.relay.{base} A\n")
        else:
            q.write(f"{rnd.choice(unknown)} A\n")
PY

cat >"$WORK/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$NSD_PORT
    do-ip6: no
    username: ""
    chroot: ""
    database: ""
    zonesdir: "$WORK"
    zonelistfile: "$WORK/zone.list"
    xfrdfile: "$WORK/xfrd.state"
    xfrdir: "$WORK"
    pidfile: "$WORK/nsd.pid"
    logfile: "$WORK/nsd.log"
    server-count: 1
    refuse-any: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: $BASE
    zonefile: "$WORK/saas.test.zone"
EOF

# --- servers -----------------------------------------------------------------
log "starting NSD on 127.0.0.1:$NSD_PORT"
"$NSD" -d -c "$WORK/nsd.conf" >"$WORK/nsd.out" 2>&1 &
PIDS+=($!)
wait_udp_for 100 "${PIDS[-1]}" "$NSD_PORT" || die "NSD did not start: $(tail -5 "$WORK/nsd.out" "$WORK/nsd.log" 2>/dev/null)"
log "starting proxpanel serve --roles dns on 127.0.0.1:$PP_PORT"
"$BIN" serve >"$WORK/pp.out" 2>&1 &
PIDS+=($!)
wait_udp_for 300 "${PIDS[-1]}" "$PP_PORT" || die "proxpanel did not start: $(tail -5 "$WORK/pp.out")"

answer() { dig @127.0.0.1 -p "$1" +norec +short +time=2 +tries=1 "$2" A; }
status() { dig @127.0.0.1 -p "$1" +norec +time=2 +tries=1 "$2" A | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
for port in "$NSD_PORT" "$PP_PORT"; do
    [ "$(answer "$port" "t00042.$BASE")" = "$INGRESS" ] || die "port $port: t00042.$BASE is not $INGRESS"
    [ "$(answer "$port" "t00042.relay.$BASE")" = "$RELAY" ] || die "port $port: relay name wrong"
    [ "$(status "$port" "nobody.$BASE")" = NXDOMAIN ] || die "port $port: unknown name is not NXDOMAIN"
done
log "both servers answer the same (tenant, relay name, NXDOMAIN)"

# --- measure -----------------------------------------------------------------
run_perf() {
    local port=$1 out
    # shellcheck disable=SC2086
    out=$(dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -l "$SECS" $DNSPERF_ARGS 2>&1)
    printf '%s\n' "$out" >>"$WORK/dnsperf-$port.log"
    printf '%s\n' "$out" | awk '/Queries per second/ {printf "%d", $4}'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
nsd_runs="" pp_runs="" idle=""
for rep in $(seq 1 "$REPS"); do
    idle="$idle $(quiet_idle)"
    nsd_runs="$nsd_runs $(run_perf "$NSD_PORT")"
    idle="$idle $(quiet_idle)"
    pp_runs="$pp_runs $(run_perf "$PP_PORT")"
    : "$rep"
done
nsd_q=$(echo "$nsd_runs" | median)
pp_q=$(echo "$pp_runs" | median)
lost() { grep -h "Queries lost" "$WORK/dnsperf-$1.log" | awk '{s=s $3 " "} END {print s}'; }

printf '\nDNS: zone %s with %s tenants, %s queries (60%% tenants, 20%% relay names, 20%% NXDOMAIN)\n' "$BASE" "$TENANTS" "$QUERIES"
printf 'dnsperf %s, %s s x %s (median); idle %%: %s\n\n' "$DNSPERF_ARGS" "$SECS" "$REPS" "$idle"
printf '%-28s %12s   %s\n' "server" "qps" "runs / lost"
printf '%-28s %12s   %s/ %s\n' "NSD $(nsd -v 2>&1 | head -1 | awk '{print $3}') (rrl off)" "$nsd_q" "$nsd_runs" "$(lost "$NSD_PORT")"
printf '%-28s %12s   %s/ %s\n' "proxpanel dns (rrl off)" "$pp_q" "$pp_runs" "$(lost "$PP_PORT")"
python3 -c "print('\nratio proxpanel / NSD: %.2fx' % ($pp_q / max(1, $nsd_q)))"
