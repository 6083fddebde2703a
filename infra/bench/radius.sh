#!/usr/bin/env bash
# shellcheck shell=bash
#
# ProxPanel SaaS: RADIUS benchmark against FreeRADIUS 3.2 on this machine, in one run.
#
#     sudo infra/bench/radius.sh            # ~15 min with the defaults, plus the release build
#     sudo REPS=3 infra/bench/radius.sh     # median of 3 (the box is noisy), ~20 min
#
# Each measured point takes DURATION + WARMUP (+ a few s of checks); setting up FreeRADIUS and
# importing the subscribers takes about a minute.
#
# What it does (everything under one scratch directory, removed at the end):
#   1. installs what is missing with apt-get (root only): freeradius, freeradius-postgresql,
#      freeradius-utils, postgresql, redis-server (through infra/test-services.sh);
#   2. starts a private PostgreSQL + Redis (pp_services_up from infra/test-services.sh), then
#      restarts that PostgreSQL with default durability (fsync and synchronous_commit on, as in
#      shared/reference/baseline-bench.md; the test suite runs it with fsync off);
#   3. builds `proxpanel` in release (`cargo build --release`);
#   4. creates the same USERS users, user00001 … user10000, password "password", with reply
#      Mikrotik-Rate-Limit and a static Framed-IP-Address (100.64.n/256.n%256), in
#        (a) FreeRADIUS, files module (mods-config/files/authorize),
#        (b) FreeRADIUS, rlm_sql on PostgreSQL (packaged schema.sql; radcheck Cleartext-Password,
#            radreply; accounting into radacct),
#        (c) proxpanel on PostgreSQL: one tenant, one plan, USERS subscribers created with the CLI
#            (`proxpanel subscriber import` from one CSV; the time is reported), served
#            by `proxpanel serve` with role radius, once without and once with Redis (PP_VARIANTS);
#      FreeRADIUS runs from a private copy of /etc/freeradius/3.0 with one lean virtual server on
#      loopback: authorize { files | sql; pap }, authenticate { pap }, preacct { acct_unique },
#      accounting { sql }, empty post-auth — the setup of baseline-bench.md;
#   5. checks each server answers (radclient: Access-Accept for user00042, Access-Reject for a
#      wrong password), then runs `proxpanel dev radius-load` against each — the same
#      generator, concurrency and duration for all — auth against all three, acct against
#      rlm_sql and proxpanel, WARMUP seconds first (not counted);
#   6. prints one table (Access-Request/s and Accounting-Request/s, p50/p99, timeouts, CPU µs per
#      request of server + PostgreSQL + generator in the measured window) and our ratio to each
#      FreeRADIUS backend; checks that every acknowledged accounting session is in the database
#      (radacct / radius_sessions rows); and, with PG_STATEMENTS=1, lists the SQL statements per
#      request of each system (pg_stat_statements) to show where the time goes.
#
# Knobs (environment):
#   DURATION=10          seconds per measurement
#   WARMUP=2             seconds of unmeasured load before each measurement
#   CONCURRENCY="16 64"  requests outstanding (one table block per value)
#   REPS=1               repetitions per point; the median is reported (the box is noisy: use 3)
#   USERS=10000          users/subscribers
#   SECRET=testing123    RADIUS shared secret
#   PP_VARIANTS="pg pg+redis"   proxpanel configurations to measure ("pg" = in-process cache)
#   PG_DURABLE=1         0 keeps the test suite's fsync=off/synchronous_commit=off PostgreSQL
#   PG_STATEMENTS=1      load pg_stat_statements and print, per system, the SQL statements per
#                        request and where the database time goes (0: plain PostgreSQL)
#   SYSTEMS="files sql proxpanel"   which systems to measure
#   PROXPANEL_BIN=…      use this binary instead of building target/release/proxpanel
#   SKIP_BUILD=1         do not run cargo (target/release/proxpanel must exist)
#   KEEP=1               keep the scratch directory (logs, raddb copies) for inspection
#   PG_EXTRA_OPTS=      more postgres -c options (diagnostics: auto_explain via session_preload_libraries)
#   QUIET_IDLE=80 QUIET_WAIT=120   before each measurement wait (at most QUIET_WAIT s) until the
#                        CPUs are at least QUIET_IDLE % idle; the idle % seen is printed per point
#   BENCH_TMPDIR=/tmp    parent of the scratch directory
#
# Load generator: `proxpanel dev radius-load` (src/dev_load.rs), closed loop, one UDP socket per
# outstanding request, 2 s timeout, Response Authenticator checked on every reply. Load
# generator and servers share this machine's cores, as in baseline-bench.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=infra/test-services.sh
. "$ROOT/infra/test-services.sh"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-"16 64"}
REPS=${REPS:-1}
USERS=${USERS:-10000}
SECRET=${SECRET:-testing123}
PASSWORD=password
PP_VARIANTS=${PP_VARIANTS:-"pg pg+redis"}
PG_DURABLE=${PG_DURABLE:-1}
PG_STATEMENTS=${PG_STATEMENTS:-1}
SYSTEMS=${SYSTEMS:-"files sql proxpanel"}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}
QUIET_IDLE=${QUIET_IDLE:-80}
QUIET_WAIT=${QUIET_WAIT:-120}

# shellcheck source=infra/bench/lib.sh
. "$ROOT/infra/bench/lib.sh"
want() { [[ " $SYSTEMS " == *" $1 "* ]]; }

# --- cleanup --------------------------------------------------------------------------------

PIDS=()
WORK=
cleanup() {
    local rc=$? pid
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [ "$KEEP" = 1 ] && [ -n "$WORK" ] && [ -d "$WORK" ]; then
        cp "$PP_SVC_TMP/pg-run/postgres.log" "$WORK/" 2>/dev/null
    fi
    pp_services_down
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$KEEP" = 1 ]; then
            log "kept $WORK"
        else
            rm -rf -- "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# --- prerequisites --------------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "run as root (FreeRADIUS and PostgreSQL are started as root/postgres, packages installed with apt-get)"
for v in DURATION WARMUP REPS USERS QUIET_IDLE QUIET_WAIT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"
done
if [ "$USERS" -lt 1 ] || [ "$USERS" -gt 99999 ]; then die "USERS must be 1..99999"; fi

need=()
command -v freeradius >/dev/null 2>&1 || need+=(freeradius)
command -v radclient >/dev/null 2>&1 || need+=(freeradius-utils)
[ -e /usr/lib/freeradius/rlm_sql_postgresql.so ] || need+=(freeradius-postgresql)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
    pp_apt_install "${need[@]}" || die "cannot install ${need[*]}"
fi
[ -d /etc/freeradius/3.0 ] || die "/etc/freeradius/3.0 not found (freeradius-config)"
FR_VERSION=$(freeradius -v 2>/dev/null | sed -n '1{s/^[^0-9]*//;s/,.*//;p}')

# FreeRADIUS keeps every answered request for cleanup_delay (5 s) to catch duplicates, keyed by
# source port and identifier, and drops new ones beyond max_requests (default 16384, "256 ×
# clients"). Each generator task has its own source port, so it can hold 256 entries: at 64
# tasks the default is exactly full and FreeRADIUS drops requests ("16385 is too many", seen
# even at 32768 in bursts). Raised to 1024 per task at the highest concurrency, at least 65536
# (memory only).
FR_MAX_REQUESTS=65536
for c in $CONCURRENCY; do
    [[ $c =~ ^[0-9]+$ ]] || die "CONCURRENCY must be numbers"
    if [ $((c * 1024)) -gt "$FR_MAX_REQUESTS" ]; then FR_MAX_REQUESTS=$((c * 1024)); fi
done

base=${BENCH_TMPDIR:-/tmp}
WORK=$(mktemp -d "$base/proxpanel-bench.XXXXXX") || die "mktemp failed in $base"
chmod 755 "$WORK"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# A free UDP port on 127.0.0.1 that is not in the arguments.
free_udp_port() {
    local p
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        p=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        if [[ " $* " != *" $p "* ]]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}


# --- PostgreSQL + Redis ---------------------------------------------------------------------

log "starting PostgreSQL and Redis (infra/test-services.sh)"
pp_services_up || die "could not start PostgreSQL/Redis"
PSQL=$(_pp_psql)
PGPORT=$PP_SVC_PG_PORT
if [ "$PG_DURABLE" = 1 ] || [ "$PG_STATEMENTS" = 1 ]; then
    pgopts="-p $PGPORT -k $PP_SVC_TMP/pg-run -c listen_addresses=127.0.0.1 -c max_connections=300"
    if [ "$PG_DURABLE" = 1 ]; then
        log "restarting PostgreSQL with default durability (fsync, synchronous_commit, full_page_writes on)"
    else
        pgopts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    if [ "$PG_STATEMENTS" = 1 ]; then
        pgopts+=" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=1000"
    fi
    # Diagnostics, e.g. PG_EXTRA_OPTS="-c auto_explain.log_min_duration=20 ..." with
    # session_preload_libraries=auto_explain; with KEEP=1 the server log is kept in the work dir.
    pgopts+=" ${PG_EXTRA_OPTS:-}"
    _pp_as_pg "$PP_SVC_PG_BINDIR/pg_ctl" -D "$PP_SVC_PG_DATA" -m fast -w -t 60 \
        -l "$PP_SVC_TMP/pg-run/postgres.log" -o "$pgopts" \
        restart >/dev/null || die "PostgreSQL restart failed (log: $PP_SVC_TMP/pg-run/postgres.log)"
fi
pg() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$1" "${@:2}"; }
if [ "$PG_STATEMENTS" = 1 ]; then
    pg "$PP_TEST_PG_SUPER_URL" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >/dev/null \
        || die "pg_stat_statements is not available (postgresql-contrib); set PG_STATEMENTS=0"
fi
pg "$PP_TEST_PG_SUPER_URL" -tAc 'show fsync' | grep -qx "$([ "$PG_DURABLE" = 1 ] && echo on || echo off)" \
    || die "PostgreSQL durability is not what PG_DURABLE=$PG_DURABLE asks for"
PG_SETTINGS=$(pg "$PP_TEST_PG_SUPER_URL" -tAc "select string_agg(name||'='||setting, ' ' order by name) from pg_settings where name in ('fsync','synchronous_commit','full_page_writes','server_version')")

# The disk's flush latency bounds durable accounting: a closed loop of C outstanding requests in
# which every answer waits for one flush (PostgreSQL's commit, or our spool) cannot exceed
# C / latency requests per second, however the flushes are shared. Measured where PostgreSQL's
# data lives: median fdatasync of a 4 KiB append, 200 times.
PG_DATA_DIR=$(pg "$PP_TEST_PG_SUPER_URL" -tAc 'show data_directory')
FSYNC_MS=$(python3 - "$PG_DATA_DIR" <<'EOF'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "proxpanel-bench-fsync.tmp")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
lat = []
try:
    for _ in range(200):
        t = time.perf_counter()
        os.write(fd, b"x" * 4096)
        os.fdatasync(fd)
        lat.append(time.perf_counter() - t)
finally:
    os.close(fd)
    os.unlink(path)
print(f"{statistics.median(lat) * 1e3:.2f}")
EOF
) || FSYNC_MS=""
export FSYNC_MS
[ -n "$FSYNC_MS" ] && log "disk flush latency (fdatasync, median of 200): $FSYNC_MS ms"
PGURL_BASE="postgres://postgres@127.0.0.1:$PGPORT"

# --- proxpanel binary -----------------------------------------------------------------------

if [ -n "${PROXPANEL_BIN:-}" ]; then
    PP=$PROXPANEL_BIN
    # A knob of this script, not of proxpanel (which refuses PROXPANEL_* names it does not know).
    unset PROXPANEL_BIN
elif [ "$SKIP_BUILD" = 1 ]; then
    PP="$ROOT/target/release/proxpanel"
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found (set PROXPANEL_BIN or install Rust)"
    log "building proxpanel (cargo build --release)"
    (cd "$ROOT" && cargo build --release --bin proxpanel) || die "cargo build --release failed"
    PP="$ROOT/target/release/proxpanel"
fi
[ -x "$PP" ] || die "$PP is not an executable"
"$PP" dev radius-load --help >/dev/null 2>&1 || die "$PP has no \`dev radius-load\` command"

# --- the users, once, in the three shapes ---------------------------------------------------

# user<N>, its Framed-IP-Address.
python3 - "$USERS" >"$WORK/users.txt" <<'EOF'
import sys
for n in range(1, int(sys.argv[1]) + 1):
    print(f"user{n:05d} 100.64.{n // 256}.{n % 256}")
EOF

# --- FreeRADIUS -----------------------------------------------------------------------------

# fr_setup NAME BACKEND(files|sql) AUTH_PORT ACCT_PORT: a raddb copy in $WORK/raddb-NAME.
fr_setup() {
    local name=$1 backend=$2 auth=$3 acct=$4 r="$WORK/raddb-$1" m
    cp -a /etc/freeradius/3.0 "$r"
    mkdir -p "$WORK/fr-$name-run" "$WORK/fr-$name-log"
    # Paths into the copy, stay root (no user switch), no proxying.
    sed -i -e "s|^raddbdir = .*|raddbdir = $r|" \
        -e "s|^run_dir = .*|run_dir = $WORK/fr-$name-run|" \
        -e "s|^logdir = .*|logdir = $WORK/fr-$name-log|" \
        -e 's|^\(\s*\)user = freerad|\1#user = freerad|' \
        -e 's|^\(\s*\)group = freerad|\1#group = freerad|' \
        -e 's|^proxy_requests\s*=.*|proxy_requests = no|' \
        -e "s|^max_requests = .*|max_requests = $FR_MAX_REQUESTS|" \
        "$r/radiusd.conf"
    rm -f "$r"/sites-enabled/* "$r"/mods-enabled/*
    for m in always attr_filter expr files pap preprocess; do
        ln -s "../mods-available/$m" "$r/mods-enabled/$m"
    done
    cat >"$r/clients.conf" <<EOF
client bench {
	ipaddr = 127.0.0.1
	secret = $SECRET
	shortname = bench
}
EOF
    local authorize accounting
    if [ "$backend" = files ]; then
        authorize="files"
        accounting="ok"
        python3 - "$WORK/users.txt" "$PASSWORD" >"$r/mods-config/files/authorize" <<'EOF'
import sys
pw = sys.argv[2]
for line in open(sys.argv[1]):
    user, ip = line.split()
    print(f'{user}\tCleartext-Password := "{pw}"\n\tMikrotik-Rate-Limit := "10M/20M",\n\tFramed-IP-Address := {ip}\n')
EOF
    else
        authorize="sql"
        accounting="sql"
        # shellcheck disable=SC2016  # ${dialect} is FreeRADIUS syntax
        sed -e 's|^\(\s*\)dialect = .*|\1dialect = "postgresql"|' \
            -e 's|^\(\s*\)driver = "rlm_sql_null"|\1driver = "rlm_sql_${dialect}"|' \
            -e 's|^\(\s*\)radius_db = .*|\1radius_db = "radius"|' \
            -e "s|^#\?\(\s*\)server = \"localhost\"|\1server = \"127.0.0.1\"|" \
            -e "s|^#\?\(\s*\)port = 3306|\1port = $PGPORT|" \
            -e 's|^#\?\(\s*\)login = "radius"|\1login = "postgres"|' \
            -e 's|^#\?\(\s*\)password = "radpass"|\1password = ""|' \
            "$r/mods-available/sql" >"$r/mods-enabled/sql"
        grep -q "port = $PGPORT" "$r/mods-enabled/sql" || die "could not configure $r/mods-enabled/sql (unexpected mods-available/sql layout)"
    fi
    cat >"$r/sites-enabled/bench" <<EOF
server bench {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $auth
	}
	listen {
		type = acct
		ipaddr = 127.0.0.1
		port = $acct
	}
	authorize {
		$authorize
		pap
	}
	authenticate {
		Auth-Type PAP {
			pap
		}
	}
	preacct {
		acct_unique
	}
	accounting {
		$accounting
	}
	post-auth {
	}
}
EOF
    freeradius -C -d "$r" >"$WORK/fr-$name-check.log" 2>&1 \
        || { tail -30 "$WORK/fr-$name-check.log" >&2; die "FreeRADIUS ($name) configuration check failed"; }
}

# fr_start NAME AUTH ACCT -> sets FR_PID
fr_start() {
    local name=$1 auth=$2 acct=$3
    freeradius -f -d "$WORK/raddb-$name" -l "$WORK/fr-$name.log" &
    FR_PID=$!
    SERVER_PID=$FR_PID
    PIDS+=("$FR_PID")
    if ! wait_udp_for 600 "$FR_PID" "$auth" "$acct"; then
        tail -30 "$WORK/fr-$name.log" >&2
        die "FreeRADIUS ($name) did not start listening on 127.0.0.1:$auth/$acct"
    fi
}

# --- checks with radclient ------------------------------------------------------------------

# check_auth LABEL PORT: Access-Accept for user00042 with Mikrotik-Rate-Limit, Reject for a bad
# password.
check_auth() {
    local label=$1 port=$2 out
    out=$(printf 'User-Name = "user00042"\nUser-Password = "%s"\nMessage-Authenticator = 0x00\n' "$PASSWORD" \
        | radclient -x -r 2 -t 3 "127.0.0.1:$port" auth "$SECRET" 2>&1) || true
    if ! grep -q 'Access-Accept' <<<"$out" || ! grep -q 'Mikrotik-Rate-Limit' <<<"$out"; then
        printf '%s\n' "$out" >&2
        die "$label: no Access-Accept with Mikrotik-Rate-Limit for user00042"
    fi
    out=$(printf 'User-Name = "user00042"\nUser-Password = "wrong-password"\nMessage-Authenticator = 0x00\n' \
        | radclient -x -r 1 -t 3 "127.0.0.1:$port" auth "$SECRET" 2>&1) || true
    if ! grep -q 'Access-Reject' <<<"$out"; then
        printf '%s\n' "$out" >&2
        die "$label: no Access-Reject for a wrong password"
    fi
    log "$label: Access-Accept for user00042, Access-Reject for a wrong password"
}

# --- measurements ---------------------------------------------------------------------------

# CPU time (clock ticks, user + system) of a process and its reaped children.
proc_ticks() {
    awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# CPU ticks of our PostgreSQL: the postmaster (with reaped backends) plus live backends.
pg_ticks() {
    local pm t c
    pm=$(head -1 "$PP_SVC_PG_DATA/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    t=$(proc_ticks "$pm")
    for c in $(pgrep -P "$pm"); do
        t=$((t + $(proc_ticks "$c")))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)
# `time` (the bash keyword) prints user and system CPU seconds of the load generator.
TIMEFORMAT="%U %S"

# stmt_snapshot DBNAME FILE: per-statement calls and time in DBNAME since the last reset.
stmt_snapshot() {
    pg "$PP_TEST_PG_SUPER_URL" -tA -F $'\t' -c "
        select calls, round(total_exec_time::numeric, 3),
               regexp_replace(left(query, 400), '\s+', ' ', 'g')
        from pg_stat_statements s join pg_database d on d.oid = s.dbid
        where d.datname = '$1' and calls > 0 order by total_exec_time desc" >"$2"
}

# measure SYSTEM MODE PORT [DBNAME [ROWS_SQL]]: warm-up, then REPS × DURATION for every
# concurrency; appends to $RESULTS. DBNAME: the system's database (statements per request are
# recorded when PG_STATEMENTS=1). ROWS_SQL (returns "rows stopped"): checks that the acknowledged
# sessions are in the database. CPU time of the server ($SERVER_PID), of PostgreSQL (when DBNAME
# is given) and of the load generator is recorded for the measured window.
measure() {
    local sys=$1 mode=$2 port=$3 dbname=${4:-} rows_sql=${5:-} db c rep out before after idle stmts
    local s0 s1 p0 p1 cpu
    for c in $CONCURRENCY; do
        # Every point starts from a settled database (the previous point's rows vacuumed, dirty
        # pages written), so no point pays for its predecessor's autovacuum or checkpoint.
        if [ -n "$dbname" ]; then
            pg "$PGURL_BASE/$dbname" -c 'VACUUM ANALYZE' -c 'CHECKPOINT' >/dev/null || die "VACUUM failed"
        fi
        if [ "$WARMUP" -gt 0 ]; then
            "$PP" dev radius-load --target "127.0.0.1:$port" --secret "$SECRET" --users "$USERS" \
                --concurrency "$c" --duration "$WARMUP" --mode "$mode" --password "$PASSWORD" --json \
                >/dev/null || die "$sys $mode: warm-up load failed"
        fi
        for rep in $(seq 1 "$REPS"); do
            idle=$(quiet_idle)
            db="$PGURL_BASE/$dbname"
            before=
            if [ -n "$rows_sql" ]; then
                before=$(pg "$db" -tAF' ' -c "$rows_sql")
            fi
            stmts=
            if [ -n "$dbname" ] && [ "$PG_STATEMENTS" = 1 ]; then
                pg "$PP_TEST_PG_SUPER_URL" -tAc 'select pg_stat_statements_reset()' >/dev/null
                stmts="$WORK/stmts-$(tr '[:upper:]' '[:lower:]' <<<"$sys-$mode-$c-$rep" | tr -c 'a-z0-9\n' '_').tsv"
            fi
            s0=$(proc_ticks "$SERVER_PID")
            p0=0
            [ -n "$dbname" ] && p0=$(pg_ticks)
            if ! { time "$PP" dev radius-load --target "127.0.0.1:$port" --secret "$SECRET" --users "$USERS" \
                --concurrency "$c" --duration "$DURATION" --mode "$mode" --password "$PASSWORD" --json \
                >"$WORK/load.json" 2>"$WORK/load.err"; } 2>"$WORK/load.time"; then
                die "$sys $mode c=$c: load failed: $(cat "$WORK/load.err" "$WORK/load.json")"
            fi
            s1=$(proc_ticks "$SERVER_PID")
            p1=0
            [ -n "$dbname" ] && p1=$(pg_ticks)
            out=$(cat "$WORK/load.json")
            # server s, PostgreSQL s, load generator s (CPU seconds in the window)
            cpu="$(python3 -c "print(round(($s1 - $s0) / $HZ, 2), round(($p1 - $p0) / $HZ, 2), round(sum(map(float, '$(cat "$WORK/load.time")'.split())), 2))")"
            [ -n "$stmts" ] && stmt_snapshot "$dbname" "$stmts"
            after=
            tail_ms=
            if [ -n "$rows_sql" ]; then
                # How long after the last answer the database holds every acknowledged session
                # (a system that acknowledges from a local spool drains it into the database
                # afterwards; one that commits first is there at once). Polled, so it reads as
                # "within N ms", N >= one query's time; at most 10 s, then the check below fails.
                local want t0
                want=$(python3 -c "import json; print(json.load(open('$WORK/load.json'))['ok'] // 3)")
                t0=$(date +%s%N)
                while :; do
                    after=$(pg "$db" -tAF' ' -c "$rows_sql")
                    if python3 -c "import sys; b, a = '$before'.split(), '$after'.split(); sys.exit(0 if int(a[0]) - int(b[0]) >= $want and int(a[1]) - int(b[1]) >= $want - $c else 1)"; then
                        break
                    fi
                    [ $(( $(date +%s%N) - t0 )) -gt 10000000000 ] && break
                    sleep 0.01
                done
                tail_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
                # Whatever else arrives late still counts (nothing should).
                sleep 1
                after=$(pg "$db" -tAF' ' -c "$rows_sql")
            fi
            python3 - "$sys" "$mode" "$c" "$rep" "$out" "$before" "$after" "$idle" "$stmts" "$cpu" "$tail_ms" >>"$RESULTS" <<'EOF'
import json, sys
sys_, mode, c, rep, out, before, after, idle, stmts, cpu, tail_ms = sys.argv[1:12]
j = json.loads(out)
rows = stopped = ""
if before and after:
    b, a = [list(map(int, x.split())) for x in (before, after)]
    rows, stopped = a[0] - b[0], a[1] - b[1]
print("\t".join(str(x) for x in (sys_, mode, c, rep, j["rps"], j["ok"], j["rejects"], j["timeouts"],
                                 j.get("invalid", 0), j["p50_ms"], j["p99_ms"], rows, stopped, idle, stmts, cpu, tail_ms)))
EOF
            log "$(tail -1 "$RESULTS" | awk -F'\t' '{printf "%s %s c=%s rep %s: %s req/s, ok %s, rejects %s, timeouts %s, p50 %s ms, p99 %s ms%s, %s%% idle before, CPU s server/db/loadgen %s", $1,$2,$3,$4,$5,$6,$7,$8,$10,$11, ($12!="" ? ", db rows +" $12 " (stopped +" $13 "), all in the database " $17 " ms after the last answer" : ""), $14, $16}')"
        done
    done
}

SETUP_NOTES=()

# --- (a) FreeRADIUS files -------------------------------------------------------------------

if want files; then
    FRF_AUTH=$(free_udp_port) || die "no free UDP port"
    FRF_ACCT=$(free_udp_port "$FRF_AUTH") || die "no free UDP port"
    log "FreeRADIUS files: configuring $USERS users on 127.0.0.1:$FRF_AUTH"
    fr_setup files files "$FRF_AUTH" "$FRF_ACCT"
    fr_start files "$FRF_AUTH" "$FRF_ACCT"
    check_auth "FreeRADIUS files" "$FRF_AUTH"
    measure "FreeRADIUS files" auth "$FRF_AUTH"
    stop_pid "$FR_PID"
    forget_pid "$FR_PID"
fi

# --- (b) FreeRADIUS rlm_sql PostgreSQL ------------------------------------------------------

if want sql; then
    FRS_AUTH=$(free_udp_port) || die "no free UDP port"
    FRS_ACCT=$(free_udp_port "$FRS_AUTH") || die "no free UDP port"
    log "FreeRADIUS rlm_sql: database radius with $USERS users in radcheck/radreply"
    pg "$PP_TEST_PG_SUPER_URL" -c 'CREATE DATABASE radius' >/dev/null
    pg "$PGURL_BASE/radius" -f /etc/freeradius/3.0/mods-config/sql/main/postgresql/schema.sql >/dev/null \
        || die "loading the FreeRADIUS PostgreSQL schema failed"
    pg "$PGURL_BASE/radius" >/dev/null <<EOF || die "inserting radcheck/radreply failed"
INSERT INTO radcheck (username, attribute, op, value)
  SELECT 'user' || lpad(n::text, 5, '0'), 'Cleartext-Password', ':=', '$PASSWORD' FROM generate_series(1, $USERS) n;
INSERT INTO radreply (username, attribute, op, value)
  SELECT 'user' || lpad(n::text, 5, '0'), 'Mikrotik-Rate-Limit', ':=', '10M/20M' FROM generate_series(1, $USERS) n;
INSERT INTO radreply (username, attribute, op, value)
  SELECT 'user' || lpad(n::text, 5, '0'), 'Framed-IP-Address', ':=', '100.64.' || (n / 256) || '.' || (n % 256)
  FROM generate_series(1, $USERS) n;
ANALYZE;
EOF
    fr_setup sql sql "$FRS_AUTH" "$FRS_ACCT"
    fr_start sql "$FRS_AUTH" "$FRS_ACCT"
    check_auth "FreeRADIUS rlm_sql" "$FRS_AUTH"
    measure "FreeRADIUS rlm_sql" auth "$FRS_AUTH" radius
    measure "FreeRADIUS rlm_sql" acct "$FRS_ACCT" radius \
        "select count(*), count(acctstoptime) from radacct"
    stop_pid "$FR_PID"
    forget_pid "$FR_PID"
fi

# --- (c) proxpanel on PostgreSQL ------------------------------------------------------------

if want proxpanel; then
    pg "$PP_TEST_PG_SUPER_URL" -c 'CREATE DATABASE proxpanel OWNER proxpanel_owner' >/dev/null
    export PROXPANEL_DATABASE_URL="postgres://proxpanel_app@127.0.0.1:$PGPORT/proxpanel"
    export PROXPANEL_DATABASE_ADMIN_URL="postgres://proxpanel_owner@127.0.0.1:$PGPORT/proxpanel"
    export PROXPANEL_DATABASE_SYSTEM_URL="postgres://proxpanel_system@127.0.0.1:$PGPORT/proxpanel"
    PROXPANEL_SECRET_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
    export PROXPANEL_SECRET_KEY
    export PROXPANEL_DATA_DIR="$WORK/pp-data"
    export PROXPANEL_LOG=warn
    unset PROXPANEL_REDIS_URL PROXPANEL_CONFIG
    mkdir -p "$PROXPANEL_DATA_DIR"

    log "proxpanel: migrate, tenant, plan, NAS 127.0.0.1"
    "$PP" migrate >/dev/null || die "proxpanel migrate failed"
    "$PP" tenant create --slug bench --name Bench --owner-email owner@bench.test \
        --owner-password 'bench-owner-password' --max-subscribers 1000000 >/dev/null \
        || die "proxpanel tenant create failed"
    "$PP" plan add --tenant bench --name p10m --download-kbps 20000 --upload-kbps 10000 >/dev/null \
        || die "proxpanel plan add failed"
    "$PP" nas add --tenant bench --name bench-nas --ip 127.0.0.1 --secret "$SECRET" --vendor mikrotik >/dev/null \
        || die "proxpanel nas add failed"

    log "proxpanel: importing $USERS subscribers with \`proxpanel subscriber import\` (one CSV)"
    { echo "username,password,plan,static_ip"
      awk -v pw="$PASSWORD" '{print $1 "," pw ",p10m," $2}' "$WORK/users.txt"; } >"$WORK/users.csv"
    t0=$(date +%s.%N)
    if ! "$PP" subscriber import --tenant bench --file "$WORK/users.csv" >/dev/null 2>"$WORK/subscriber-import.err"; then
        head -20 "$WORK/subscriber-import.err" >&2
        die "proxpanel subscriber import failed"
    fi
    t1=$(date +%s.%N)
    n=$(pg "$PGURL_BASE/proxpanel" -tAc 'select count(*) from subscribers')
    [ "$n" = "$USERS" ] || die "expected $USERS subscribers, found $n"
    CREATE_S=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
    SETUP_NOTES+=("proxpanel: $USERS subscribers imported in ${CREATE_S} s with \`proxpanel subscriber import\` ($(python3 -c "print(f'{$USERS / ($t1 - $t0):.0f}')")/s)")
    log "${SETUP_NOTES[-1]}"

    for variant in $PP_VARIANTS; do
        case $variant in
        pg) unset PROXPANEL_REDIS_URL ;;
        pg+redis) export PROXPANEL_REDIS_URL="$PP_TEST_REDIS_URL" ;;
        *) die "unknown PP_VARIANTS entry $variant (pg, pg+redis)" ;;
        esac
        PPA=$(free_udp_port) || die "no free UDP port"
        PPB=$(free_udp_port "$PPA") || die "no free UDP port"
        ADMIN=$(_pp_free_port) || die "no free TCP port"
        log "proxpanel ($variant): serve --roles radius on 127.0.0.1:$PPA/$PPB"
        PROXPANEL_ROLES=radius PROXPANEL_RADIUS_AUTH_LISTEN="127.0.0.1:$PPA" \
            PROXPANEL_RADIUS_ACCT_LISTEN="127.0.0.1:$PPB" PROXPANEL_RADIUS_TENANT_RPS=0 \
            PROXPANEL_ADMIN_LISTEN="127.0.0.1:$ADMIN" PROXPANEL_HTTP_LISTEN=off \
            PROXPANEL_DNS_LISTEN=off PROXPANEL_WG_LISTEN=off \
            "$PP" serve >"$WORK/proxpanel-$variant.log" 2>&1 &
        PP_PID=$!
        SERVER_PID=$PP_PID
        PIDS+=("$PP_PID")
        if ! wait_udp_for 600 "$PP_PID" "$PPA" "$PPB"; then
            tail -30 "$WORK/proxpanel-$variant.log" >&2
            die "proxpanel ($variant) did not start listening on 127.0.0.1:$PPA/$PPB"
        fi
        check_auth "proxpanel ($variant)" "$PPA"
        measure "proxpanel ($variant)" auth "$PPA" proxpanel
        measure "proxpanel ($variant)" acct "$PPB" proxpanel \
            "select count(*), count(stopped_at) from radius_sessions"
        # Sessions whose Stop was still in flight when a run ended stay open and would count
        # against simultaneous use in the next variant's auth run: close them the way a NAS
        # does after a reboot.
        printf 'Acct-Status-Type = Accounting-On\nNAS-IP-Address = 127.0.0.1\nAcct-Session-Id = "bench-reset"\n' \
            | radclient -q -r 2 -t 3 "127.0.0.1:$PPB" acct "$SECRET" >/dev/null 2>&1 \
            || log "proxpanel ($variant): no answer to Accounting-On"
        sleep 1
        open=$(pg "$PGURL_BASE/proxpanel" -tAc 'select count(*) from radius_sessions where stopped_at is null')
        [ "$open" = 0 ] || log "warning: $open sessions still open after Accounting-On"
        if [ "$variant" = "${PP_VARIANTS%% *}" ]; then
            curl -fsS "http://127.0.0.1:$ADMIN/metrics" >"$WORK/proxpanel-$variant.metrics" 2>/dev/null || true
        fi
        stop_pid "$PP_PID"
        forget_pid "$PP_PID"
        grep -E ' (ERROR|WARN) ' "$WORK/proxpanel-$variant.log" | head -5 >&2 || true
    done
fi

# --- report ---------------------------------------------------------------------------------

python3 - "$RESULTS" "$DURATION" "$REPS" "$USERS" "$PG_SETTINGS" "$FR_VERSION" "$(nproc)" \
    "$(uname -r)" "${SETUP_NOTES[@]}" <<'EOF'
import os, statistics, sys
from collections import defaultdict

path, duration, reps, users, pgs, frv, ncpu, kernel = sys.argv[1:9]
notes = sys.argv[9:]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
points = defaultdict(list)
order = []
for r in rows:
    key = (r[0], r[1], int(r[2]))
    if key not in points:
        order.append(key)
    points[key].append(r)

def cpu_per_req(rs):
    # Median over the runs of CPU microseconds per answered request: server + PostgreSQL + generator.
    per = []
    for r in rs:
        n = int(r[5]) + int(r[6])
        if len(r) > 15 and r[15] and n:
            per.append([float(x) * 1e6 / n for x in r[15].split()])
    if not per:
        return ""
    m = [statistics.median(p[i] for p in per) for i in range(3)]
    return f"{m[0]:.0f}+{m[1]:.0f}+{m[2]:.0f}"

def med(key, col, cast=float):
    vals = [cast(r[col]) for r in points[key] if r[col] not in ("", "None")]
    return statistics.median(vals) if vals else None

print()
print(f"RADIUS benchmark: {users} users, {duration} s per point, median of {reps}; "
      f"{ncpu} CPUs, kernel {kernel}; load generator and servers on the same machine")
print(f"FreeRADIUS {frv}; PostgreSQL {pgs}")
for n in notes:
    print(n)
print()
hdr = ["system", "request", "conc", "req/s", "p50 ms", "p99 ms", "ok", "rejects", "timeouts", "db rows",
       "in db after", "CPU µs/req srv+db+gen", "runs (req/s)", "idle% before"]
table = []
for key in order:
    sys_, mode, c = key
    rs = points[key]
    rows_ = ""
    if rs[0][11] != "":
        rows_ = f"{sum(int(r[11]) for r in rs)} ({sum(int(r[12]) for r in rs)} stopped)"
    table.append([sys_, "Access-Request" if mode == "auth" else "Accounting-Request", str(c),
                  f"{med(key, 4):,.0f}", f"{med(key, 9):.3f}", f"{med(key, 10):.3f}",
                  str(sum(int(r[5]) for r in rs)), str(sum(int(r[6]) for r in rs)),
                  str(sum(int(r[7]) for r in rs)), rows_,
                  (f"{max(int(r[16]) for r in rs)} ms" if rs[0][11] != "" and len(rs[0]) > 16 and rs[0][16] else ""),
                  cpu_per_req(rs),
                  " ".join(f"{float(r[4]):.0f}" for r in rs), " ".join(r[13] for r in rs)])
w = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(hdr)]
right = {3, 4, 5, 6, 7, 8, 10, 11}
def line(cells):
    print("  ".join(c.rjust(w[i]) if i in right else c.ljust(w[i]) for i, c in enumerate(cells)).rstrip())
line(hdr)
line(["-" * x for x in w])
for t in table:
    line(t)

# Accounting durability: sessions acknowledged (ok/3 complete cycles) vs rows written.
problems = []
for key in order:
    sys_, mode, c = key
    for r in points[key]:
        if r[7] not in ("0", ""):
            problems.append(f"{sys_} {mode} c={c}: {r[7]} timeouts")
        if mode == "auth" and r[6] not in ("0", ""):
            problems.append(f"{sys_} auth c={c}: {r[6]} rejects (every user has the right password)")
        if mode == "acct" and r[11] != "":
            ok, rows_, stopped = int(r[5]), int(r[11]), int(r[12])
            # Every acknowledged Start/Interim opened or found a row; every acknowledged Stop closed one.
            if rows_ < ok // 3 or stopped < ok // 3 - int(c):
                problems.append(f"{sys_} acct c={c}: {ok} acknowledged packets but only {rows_} rows / {stopped} stopped")

print()
concs = sorted({k[2] for k in order})
ours = [s for s in dict.fromkeys(k[0] for k in order) if s.startswith("proxpanel")]
targets = {"auth": 1.0, "acct": 5.0}
for c in concs:
    ref = {(s, m): med((s, m, c), 4) for (s, m, cc) in order if cc == c}
    for o in ours:
        parts = []
        for mode, base in (("auth", "FreeRADIUS files"), ("auth", "FreeRADIUS rlm_sql"), ("acct", "FreeRADIUS rlm_sql")):
            a, b = ref.get((o, mode)), ref.get((base, mode))
            if a is None or b is None or b == 0:
                continue
            name = base.replace("FreeRADIUS ", "FreeRADIUS-")
            goal = ""
            if mode == "auth" and base.endswith("files"):
                goal = " (target >= 1x: " + ("met" if a / b >= 1 else "NOT met") + ")"
            if mode == "acct":
                goal = " (target >= 5x: " + ("met" if a / b >= 5 else "NOT met") + ")"
            parts.append(f"{mode} ours/{name} = {a / b:.2f}x{goal}")
        if parts:
            print(f"c={c} {o}: " + "; ".join(parts))
    # The physical ceiling of durable accounting at this concurrency (see FSYNC_MS above).
    fs = float(os.environ.get("FSYNC_MS") or 0)
    if fs > 0:
        cap = c / (fs / 1000)
        got = [f"{s} {ref[(s, 'acct')] / cap:.0%}" for s in dict.fromkeys(k[0] for k in order)
               if ref.get((s, "acct"))]
        if got:
            print(f"c={c} durable-accounting ceiling: {c} outstanding / {fs:.2f} ms flush = {cap:,.0f} req/s; "
                  f"reached: " + ", ".join(got))
# Where the database time goes: statements per request (the last run at the highest concurrency
# of every system and request type that uses PostgreSQL).
shown = set()
for key in reversed(order):
    sys_, mode, c = key
    r = points[key][-1]
    if len(r) < 15 or not r[14] or (sys_, mode) in shown:
        continue
    shown.add((sys_, mode))
    answered = int(r[5]) + int(r[6])
    try:
        st = [l.rstrip("\n").split("\t", 2) for l in open(r[14]) if l.strip()]
    except OSError:
        continue
    if not st or not answered:
        continue
    calls = sum(int(x[0]) for x in st)
    ms = sum(float(x[1]) for x in st)
    if mode == "auth":
        what = "Access-Request"
    else:
        what = "Accounting-Request"
    print()
    print(f"PostgreSQL work per {what}, {sys_}, c={c} ({answered} answered in {duration} s): "
          f"{calls / answered:.2f} statements, {ms / answered:.3f} ms of statement execution "
          f"({ms / 1000 / float(duration):.2f} s of execution per wall second)")
    for n, t, q in st[:8]:
        print(f"  {int(n) / answered:6.3f}/req  {float(t) / max(1, int(n)):7.3f} ms each  {q[:110]}")
if problems:
    print()
    print("Problems:")
    for p in problems:
        print("  " + p)
EOF
