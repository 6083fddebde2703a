#!/usr/bin/env bash
# shellcheck shell=bash
#
# ProxPanel SaaS: tenant API benchmark (issue 6) at a fixed request rate, in one run.
#
#     infra/bench/api.sh                          # defaults below, plus the release build
#     TENANTS=100 SUBSCRIBERS=5000 DURATION=5 infra/bench/api.sh   # a quick check
#
# What it does (everything under one scratch directory, removed at the end):
#   1. installs oha (`cargo install oha`) when it is missing, and starts a private PostgreSQL
#      (pp_services_up from infra/test-services.sh; apt-get installs it when missing, as root);
#   2. builds `proxpanel` in release (`nice -n 19 cargo build --release`), unless SKIP_BUILD=1
#      or PROXPANEL_BIN is given;
#   3. migrates a fresh database, creates the tenant `bench` (CLI) and bulk-loads, with SQL
#      generate_series, TENANTS-1 other active tenants and SUBSCRIBERS subscribers of `bench`
#      (user000000 …, ids 00000000-0000-4000-8000-<12 digits> so the load can address them; the
#      passwords are not sealed secrets: this measures the API, not RADIUS), then VACUUM ANALYZE;
#   4. serves the API alone (`proxpanel serve --roles api`, login rate limits off) and signs in
#      as the owner of `bench`;
#   5. runs oha at a fixed rate (-q) for DURATION seconds, after WARMUP seconds unmeasured:
#        list    GET /api/v1/subscribers?search=user0NNN&limit=50 (a random 4-digit term: 50 rows
#                of the first page of ~100 matches), RATE req/s;
#        mix     the same list at RATE*(100-UPDATE_PCT)/100 req/s beside
#                PATCH /api/v1/subscribers/{random id} {"sim_use": 2} at RATE*UPDATE_PCT/100;
#   6. prints, per run, the achieved rate, p50 and p99 in ms, non-2xx answers, and the ratio of
#      p99 to the target (p99 ≤ 10 ms at 1,000 req/s; ProxPanel itself aims at p95 < 200 ms).
#
# Knobs (environment):
#   TENANTS=10000 SUBSCRIBERS=100000  the data set
#   RATE=1000            requests per second of each run
#   UPDATE_PCT=10        share of updates in the mix
#   DURATION=20 WARMUP=3 seconds per run / unmeasured before it
#   RUNS="list mix"      which runs
#   PROXPANEL_BIN=…      use this binary instead of building target/release/proxpanel
#   SKIP_BUILD=1         do not run cargo (target/release/proxpanel must exist)
#   KEEP=1               keep the scratch directory (logs, oha JSON) for inspection
#   BENCH_TMPDIR=/tmp    parent of the scratch directory
#
# The load generator and the server share this machine's cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=infra/test-services.sh
. "$ROOT/infra/test-services.sh"
# shellcheck source=infra/bench/lib.sh
. "$ROOT/infra/bench/lib.sh"

TENANTS=${TENANTS:-10000}
SUBSCRIBERS=${SUBSCRIBERS:-100000}
RATE=${RATE:-1000}
UPDATE_PCT=${UPDATE_PCT:-10}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
RUNS=${RUNS:-"list mix"}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}
TARGET_P99_MS=10
HOST=bench.saas.localhost
OWNER_PASSWORD=bench-owner-password

[ "$SUBSCRIBERS" -ge 1000 ] || die "SUBSCRIBERS must be at least 1000 (the search terms address user0000..user0999)"
[ "$TENANTS" -ge 1 ] || die "TENANTS must be at least 1"

WORK=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/proxpanel-api-bench.XXXXXX")
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
    pp_services_down || true
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools ----------------------------------------------------------------------------------

if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! command -v oha >/dev/null 2>&1; then
    command -v cargo >/dev/null 2>&1 || die "oha is missing and cargo is not there to install it"
    log "installing oha (cargo install oha; a few minutes once)"
    nice -n 19 cargo install oha --locked >"$WORK/oha-install.log" 2>&1 \
        || { tail -20 "$WORK/oha-install.log" >&2; die "cargo install oha failed"; }
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed to read oha's JSON"

if [ -n "${PROXPANEL_BIN:-}" ]; then
    PP=$PROXPANEL_BIN
    # A knob of this script, not of proxpanel (which refuses PROXPANEL_* names it does not know).
    unset PROXPANEL_BIN
elif [ "$SKIP_BUILD" = 1 ]; then
    PP="$ROOT/target/release/proxpanel"
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found (set PROXPANEL_BIN or install Rust)"
    log "building proxpanel (nice -n 19 cargo build --release)"
    (cd "$ROOT" && nice -n 19 cargo build --release --bin proxpanel) || die "cargo build --release failed"
    PP="${CARGO_TARGET_DIR:-$ROOT/target}/release/proxpanel"
fi
[ -x "$PP" ] || die "$PP is not an executable"

# --- database -------------------------------------------------------------------------------

pp_services_up || die "could not start PostgreSQL"
PGPORT=$(python3 -c "import urllib.parse,sys; print(urllib.parse.urlparse(sys.argv[1]).port)" "$PP_TEST_PG_SUPER_URL")
pg() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
pg "$PP_TEST_PG_SUPER_URL" -c 'DROP DATABASE IF EXISTS proxpanel_api_bench' >/dev/null
pg "$PP_TEST_PG_SUPER_URL" -c 'CREATE DATABASE proxpanel_api_bench OWNER proxpanel_owner' >/dev/null
DB="postgres://postgres@127.0.0.1:$PGPORT/proxpanel_api_bench"

for v in $(env | grep -o '^PROXPANEL_[A-Z_]*'); do unset "$v"; done
export PROXPANEL_DATABASE_URL="postgres://proxpanel_app@127.0.0.1:$PGPORT/proxpanel_api_bench"
export PROXPANEL_DATABASE_ADMIN_URL="postgres://proxpanel_owner@127.0.0.1:$PGPORT/proxpanel_api_bench"
export PROXPANEL_DATABASE_SYSTEM_URL="postgres://proxpanel_system@127.0.0.1:$PGPORT/proxpanel_api_bench"
PROXPANEL_SECRET_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
export PROXPANEL_SECRET_KEY
export PROXPANEL_DATA_DIR="$WORK/pp-data"
export PROXPANEL_LOG=warn
mkdir -p "$PROXPANEL_DATA_DIR"

log "migrate; tenant bench; $((TENANTS - 1)) other tenants and $SUBSCRIBERS subscribers by SQL"
"$PP" migrate >/dev/null || die "proxpanel migrate failed"
"$PP" tenant create --slug bench --name Bench --owner-email owner@bench.test \
    --owner-password "$OWNER_PASSWORD" --max-subscribers $((SUBSCRIBERS + 1000)) >/dev/null \
    || die "proxpanel tenant create failed"
t0=$(date +%s.%N)
pg "$DB" <<SQL
INSERT INTO tenants (id, slug, name, status, timezone, max_subscribers, max_nas, tunnel_subnet, created_at, updated_at)
SELECT gen_random_uuid(), 'tenant' || lpad(i::text, 6, '0'), 'Tenant ' || i, 'active', 'UTC', 5000, 20,
       '10.200.0.0/24', now(), now()
FROM generate_series(1, $((TENANTS - 1))) AS i;
INSERT INTO subscribers (id, tenant_id, username, password, status, plan_id, expires_at, sim_use,
                         usage_reset_at, created_at, updated_at)
SELECT ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, t.id,
       'user' || lpad(i::text, 6, '0'), 'bench-not-sealed',
       CASE WHEN i % 20 = 0 THEN 'disabled' ELSE 'active' END,
       (SELECT p.id FROM service_plans p WHERE p.tenant_id = t.id ORDER BY p.created_at LIMIT 1),
       now() + (i % 365) * interval '1 day', NULL, now(), now() - (i % 1000) * interval '1 minute', now()
FROM generate_series(0, $((SUBSCRIBERS - 1))) AS i, (SELECT id FROM tenants WHERE slug = 'bench') AS t;
VACUUM ANALYZE;
CHECKPOINT;
SQL
t1=$(date +%s.%N)
LOAD_S=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
log "bulk load took ${LOAD_S} s"

# --- server ---------------------------------------------------------------------------------

API_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PROXPANEL_ROLES=api PROXPANEL_HTTP_LISTEN="127.0.0.1:$API_PORT" PROXPANEL_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" \
    PROXPANEL_LOGIN_RATE_PER_MIN=0 "$PP" serve >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/serve.log" >&2; die "proxpanel serve exited"; }
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null || die "proxpanel serve not ready"
TOKEN=$(curl -fsS -H "Host: $HOST" -H 'Content-Type: application/json' \
    -d "{\"email\":\"owner@bench.test\",\"password\":\"$OWNER_PASSWORD\"}" \
    "http://127.0.0.1:$API_PORT/api/v1/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])') \
    || die "login failed"
# The access token lives 15 minutes: long enough for every run here.
n=$(curl -fsS -H "Host: $HOST" -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$API_PORT/api/v1/subscribers?search=user0004&limit=50" \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
[ "$n" = 50 ] || die "the list answered $n rows, expected 50"

BASE="http://127.0.0.1:$API_PORT"
LIST_URL="$BASE/api/v1/subscribers\\?search=user0[0-9]{3}&limit=50"
ID_RE="00000000-0000-4000-8000-0000000[0-9]{5}"
# Fewer than 100,000 subscribers: address the first 1,000 (SUBSCRIBERS >= 1000).
[ "$SUBSCRIBERS" -ge 100000 ] || ID_RE="00000000-0000-4000-8000-000000000[0-9]{3}"
PATCH_URL="$BASE/api/v1/subscribers/$ID_RE"

# oha_run NAME RATE SECONDS URL [oha args...]: fixed-rate load; JSON to $WORK/NAME.json.
oha_run() {
    local name=$1 rate=$2 secs=$3 url=$4
    shift 4
    oha --no-tui --output-format json -q "$rate" -z "${secs}s" -c 64 --rand-regex-url \
        --host "$HOST" -H "Authorization: Bearer $TOKEN" "$@" "$url" >"$WORK/$name.json" 2>"$WORK/$name.err" \
        || { cat "$WORK/$name.err" >&2; die "oha failed ($name)"; }
}

# summary NAME: one result line from oha's JSON.
summary() {
    python3 - "$WORK/$1.json" "$1" "$TARGET_P99_MS" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d.get("latencyPercentiles", {})
codes = d.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if not k.startswith("2"))
ok = sum(v for k, v in codes.items() if k.startswith("2"))
p50 = (p.get("p50") or 0) * 1000
p99 = (p.get("p99") or 0) * 1000
target = float(sys.argv[3])
print(f"{sys.argv[2]:<14} {s.get('requestsPerSec', 0):>9.0f} {p50:>9.2f} {p99:>9.2f} {ok:>8} {bad:>7} {p99 / target:>12.2f}")
PY
}

log "measuring at $RATE req/s, ${DURATION} s per run (${WARMUP} s warm-up first)"
RESULTS=()
for run in $RUNS; do
    case $run in
    list)
        oha_run warmup "$RATE" "$WARMUP" "$LIST_URL"
        oha_run list "$RATE" "$DURATION" "$LIST_URL"
        RESULTS+=("$(summary list)")
        ;;
    mix)
        reads=$((RATE * (100 - UPDATE_PCT) / 100))
        writes=$((RATE - reads))
        oha_run warmup "$RATE" "$WARMUP" "$LIST_URL"
        oha_run mix-update "$writes" "$DURATION" "$PATCH_URL" -m PATCH \
            -H 'Content-Type: application/json' -d '{"sim_use": 2}' &
        upd=$!
        oha_run mix-list "$reads" "$DURATION" "$LIST_URL"
        wait "$upd" || die "update load failed"
        RESULTS+=("$(summary mix-list)" "$(summary mix-update)")
        ;;
    *) die "unknown RUNS entry $run (list, mix)" ;;
    esac
done

echo
echo "ProxPanel tenant API on PostgreSQL: $TENANTS tenants, $SUBSCRIBERS subscribers in tenant bench (bulk load ${LOAD_S} s)"
echo "fixed rate $RATE req/s per run (mix: $((100 - UPDATE_PCT))% list, $UPDATE_PCT% PATCH), ${DURATION} s, oha -c 64"
printf '%-14s %9s %9s %9s %8s %7s %12s\n' run "req/s" "p50 ms" "p99 ms" 2xx other "p99/target"
printf '%s\n' "${RESULTS[@]}"
echo "target: p99 <= ${TARGET_P99_MS} ms at 1000 req/s (p99/target <= 1.00 meets it)"
