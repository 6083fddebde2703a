#!/usr/bin/env bash
# shellcheck shell=bash
#
# ProxPanel SaaS: throwaway PostgreSQL and Redis for the test suite.
#
# Source this file, then:
#     pp_services_up                 # start what is needed, export the URLs
#     trap pp_services_down EXIT     # stop everything and remove the data dir
#
# pp_services_up exports
#     PP_TEST_PG_SUPER_URL=postgres://postgres@127.0.0.1:<port>/postgres
#     PP_TEST_REDIS_URL=redis://127.0.0.1:<port>/
# The Rust test harness creates a fresh database per test (owned by
# proxpanel_owner) and connects as proxpanel_app / proxpanel_system /
# proxpanel_owner on the same host:port (trust authentication, no passwords).
#
# If PP_TEST_PG_SUPER_URL or PP_TEST_REDIS_URL is already set, that service is
# not started (infra/postgres/roles.sql is still applied to the given cluster).
#
# Missing packages (postgresql, redis-server) are installed with apt-get when
# running as root (CI runs as root with CI=true); otherwise the functions say
# what to install and fail.
#
# Knobs:
#     PP_PG_BINDIR      directory holding initdb/pg_ctl (default: newest
#                       /usr/lib/postgresql/*/bin, else where pg_ctl is on PATH)
#     PP_TEST_TMPDIR    parent of the private data dir (default /tmp as root,
#                       else ${TMPDIR:-/tmp})

_PP_SVC_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_PP_ROLES_SQL="$_PP_SVC_LIB_DIR/postgres/roles.sql"
_PP_APT_UPDATED=${_PP_APT_UPDATED:-0}

_pp_log() { printf '==> %s\n' "$*" >&2; }
_pp_warn() { printf 'warning: %s\n' "$*" >&2; }
_pp_err() { printf 'error: %s\n' "$*" >&2; }
_pp_is_root() { [ "$(id -u)" -eq 0 ]; }

# pp_apt_install PKG... — install Debian packages (root only). apt-get update
# runs once per shell. Services are not auto-started by the packages' postinst
# (a temporary policy-rc.d), so no stray system PostgreSQL/Redis is left running.
pp_apt_install() {
    local - rc policy=/usr/sbin/policy-rc.d made_policy=0
    set +e
    [ $# -gt 0 ] || return 0
    if ! _pp_is_root; then
        _pp_err "missing packages: $*"
        _pp_err "install them first, e.g.: sudo apt-get install --no-install-recommends $*"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        _pp_err "missing packages: $* (apt-get not available; install them with your package manager)"
        return 1
    fi
    if [ "$_PP_APT_UPDATED" != 1 ]; then
        _pp_log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q || { _pp_err "apt-get update failed"; return 1; }
        _PP_APT_UPDATED=1
    fi
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    _pp_log "installing packages: $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    rc=$?
    [ "$made_policy" = 1 ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || _pp_err "apt-get install $* failed"
    return "$rc"
}

# Directory with initdb and pg_ctl, or empty.
_pp_pg_bindir() {
    local d
    if [ -n "${PP_PG_BINDIR:-}" ]; then
        printf '%s\n' "$PP_PG_BINDIR"
        return 0
    fi
    # shellcheck disable=SC2012  # version-sorted glob of Debian's layout
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
        printf '%s\n' "$d"
        return 0
    fi
    d=$(command -v pg_ctl 2>/dev/null) || true
    if [ -n "$d" ] && [ -x "$(dirname "$d")/initdb" ]; then
        dirname "$d"
    fi
}

_pp_psql() {
    local bindir
    bindir=$(_pp_pg_bindir)
    if [ -n "$bindir" ] && [ -x "$bindir/psql" ]; then
        printf '%s\n' "$bindir/psql"
    else
        command -v psql 2>/dev/null
    fi
}

_pp_ensure_postgres_user() {
    id -u postgres >/dev/null 2>&1 && return 0
    _pp_log "creating system user postgres"
    if command -v useradd >/dev/null 2>&1; then
        useradd -r -M -d /var/lib/postgresql -s /bin/sh postgres
    else
        adduser --system --group --no-create-home --home /var/lib/postgresql postgres
    fi
}

# Run a command as the postgres user when we are root (PostgreSQL refuses to
# run as root), as ourselves otherwise. Runs from the data dir so that an
# unreadable cwd (e.g. /root) does not matter.
_pp_as_pg() {
    (
        cd "${PP_SVC_TMP:-/tmp}" 2>/dev/null || cd /
        if _pp_is_root; then
            if command -v runuser >/dev/null 2>&1; then
                exec runuser -u postgres -- "$@"
            else
                exec su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
            fi
        else
            exec "$@"
        fi
    )
}

# A free TCP port on 127.0.0.1 (not one of the arguments).
_pp_free_port() {
    local p i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        if command -v python3 >/dev/null 2>&1; then
            p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null) || p=
        fi
        if [ -z "${p:-}" ]; then
            p=$((20000 + RANDOM % 40000))
            if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
                p=
            fi
        fi
        if [ -n "$p" ] && [[ " $* " != *" $p "* ]]; then
            printf '%s\n' "$p"
            return 0
        fi
        : "$i"
    done
    _pp_err "could not find a free TCP port"
    return 1
}

# Install whatever is missing for the services we are about to start.
_pp_ensure_tools() {
    local need_pg=$1 need_redis=$2 pkgs=()
    if [ "$need_pg" = 1 ] && { [ -z "$(_pp_pg_bindir)" ] || [ -z "$(_pp_psql)" ]; }; then
        pkgs+=(postgresql)
    fi
    if [ "$need_redis" = 1 ] && { ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; }; then
        pkgs+=(redis-server)
    fi
    if [ "${#pkgs[@]}" -gt 0 ]; then
        pp_apt_install "${pkgs[@]}" || return 1
    fi
    if [ "$need_pg" = 1 ]; then
        if [ -z "$(_pp_pg_bindir)" ] || [ -z "$(_pp_psql)" ]; then
            _pp_err "PostgreSQL server binaries (initdb, pg_ctl, psql) not found; install the postgresql package or set PP_PG_BINDIR"
            return 1
        fi
        if _pp_is_root; then
            _pp_ensure_postgres_user || { _pp_err "cannot create the postgres system user"; return 1; }
        fi
    fi
    if [ "$need_redis" = 1 ] && ! command -v redis-server >/dev/null 2>&1; then
        _pp_err "redis-server not found; install the redis-server package"
        return 1
    fi
    return 0
}

_pp_apply_roles() {
    local url=$1 psql
    psql=$(_pp_psql)
    if [ -z "$psql" ]; then
        _pp_err "psql not found; cannot apply $_PP_ROLES_SQL"
        return 1
    fi
    _pp_log "creating roles (infra/postgres/roles.sql)"
    "$psql" -X -q -v ON_ERROR_STOP=1 -d "$url" -f "$_PP_ROLES_SQL" >/dev/null
}

_pp_pg_start() {
    local bindir data run port opts i
    bindir=$(_pp_pg_bindir)
    data="$PP_SVC_TMP/pg-data"
    run="$PP_SVC_TMP/pg-run"
    mkdir -p "$data" "$run" || return 1
    chmod 700 "$data" || return 1
    chmod 755 "$run" || return 1
    if _pp_is_root; then
        chown postgres: "$data" "$run" || return 1
        if ! _pp_as_pg test -w "$run"; then
            _pp_err "$run is not accessible to the postgres user; set PP_TEST_TMPDIR to a world-readable directory"
            return 1
        fi
    fi
    port=$(_pp_free_port) || return 1

    _pp_log "initializing PostgreSQL cluster ($bindir/initdb)"
    if ! _pp_as_pg "$bindir/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 \
            >"$PP_SVC_TMP/initdb.log" 2>&1; then
        _pp_as_pg find "$data" -mindepth 1 -delete >/dev/null 2>&1
        if ! _pp_as_pg "$bindir/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C \
                >"$PP_SVC_TMP/initdb.log" 2>&1; then
            _pp_err "initdb failed:"
            cat "$PP_SVC_TMP/initdb.log" >&2
            return 1
        fi
    fi

    _pp_log "starting PostgreSQL on 127.0.0.1:$port"
    opts="-p $port -k $run -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    opts+=" -c full_page_writes=off -c max_connections=300"
    PP_SVC_PG_BINDIR=$bindir
    PP_SVC_PG_DATA=$data
    PP_SVC_PG_STARTED=1
    if ! _pp_as_pg "$bindir/pg_ctl" -D "$data" -l "$run/postgres.log" -w -t 60 -o "$opts" start >/dev/null; then
        _pp_err "PostgreSQL failed to start; its log:"
        cat "$run/postgres.log" >&2
        return 1
    fi
    PP_SVC_PG_PORT=$port
    export PP_TEST_PG_SUPER_URL="postgres://postgres@127.0.0.1:$port/postgres"
    PP_SVC_SET_PG_URL=1

    # pg_ctl -w waits for the socket; make sure TCP answers as well.
    for i in $(seq 1 50); do
        "$(_pp_psql)" -X -q -d "$PP_TEST_PG_SUPER_URL" -c 'select 1' >/dev/null 2>&1 && break
        sleep 0.1
        : "$i"
    done
    _pp_apply_roles "$PP_TEST_PG_SUPER_URL" || { _pp_err "applying roles.sql failed"; return 1; }
}

_pp_redis_start() {
    local dir port i
    dir="$PP_SVC_TMP/redis"
    mkdir -p "$dir" || return 1
    port=$(_pp_free_port "${PP_SVC_PG_PORT:-}") || return 1
    _pp_log "starting Redis on 127.0.0.1:$port"
    PP_SVC_REDIS_PORT=$port
    PP_SVC_REDIS_PIDFILE="$dir/redis.pid"
    PP_SVC_REDIS_STARTED=1
    if ! redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
            --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null; then
        _pp_err "redis-server failed to start"
        cat "$dir/redis.log" >&2 2>/dev/null
        return 1
    fi
    for i in $(seq 1 100); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
            PP_SVC_REDIS_PID=$(cat "$dir/redis.pid" 2>/dev/null)
            export PP_TEST_REDIS_URL="redis://127.0.0.1:$port/"
            PP_SVC_SET_REDIS_URL=1
            return 0
        fi
        sleep 0.1
        : "$i"
    done
    _pp_err "Redis did not answer PING on 127.0.0.1:$port; its log:"
    cat "$dir/redis.log" >&2 2>/dev/null
    return 1
}

# Start PostgreSQL and Redis (each unless its URL is already set).
pp_services_up() {
    local - need_pg=0 need_redis=0 base
    set +e
    if [ -n "${PP_SVC_TMP:-}" ]; then
        return 0 # already up in this shell
    fi
    [ -n "${PP_TEST_PG_SUPER_URL:-}" ] || need_pg=1
    [ -n "${PP_TEST_REDIS_URL:-}" ] || need_redis=1

    _pp_ensure_tools "$need_pg" "$need_redis" || return 1

    if _pp_is_root; then base=${PP_TEST_TMPDIR:-/tmp}; else base=${PP_TEST_TMPDIR:-${TMPDIR:-/tmp}}; fi
    PP_SVC_TMP=$(mktemp -d "$base/proxpanel-test.XXXXXX") || { _pp_err "mktemp failed in $base"; return 1; }
    chmod 755 "$PP_SVC_TMP"

    if [ "$need_pg" = 1 ]; then
        _pp_pg_start || { pp_services_down; return 1; }
    else
        _pp_log "using PostgreSQL from PP_TEST_PG_SUPER_URL (not starting one)"
        _pp_apply_roles "$PP_TEST_PG_SUPER_URL" \
            || _pp_warn "could not apply roles.sql to PP_TEST_PG_SUPER_URL; the proxpanel_* roles must exist there"
    fi
    if [ "$need_redis" = 1 ]; then
        _pp_redis_start || { pp_services_down; return 1; }
    else
        _pp_log "using Redis from PP_TEST_REDIS_URL (not starting one)"
    fi
    _pp_log "PP_TEST_PG_SUPER_URL=$PP_TEST_PG_SUPER_URL"
    _pp_log "PP_TEST_REDIS_URL=$PP_TEST_REDIS_URL"
    return 0
}

# Stop what pp_services_up started and remove its data dir. Safe to call twice.
pp_services_down() {
    local - pid i
    set +e
    if [ "${PP_SVC_REDIS_STARTED:-0}" = 1 ]; then
        _pp_log "stopping Redis"
        pid=${PP_SVC_REDIS_PID:-}
        [ -n "$pid" ] || pid=$(cat "${PP_SVC_REDIS_PIDFILE:-/nonexistent}" 2>/dev/null)
        redis-cli -h 127.0.0.1 -p "$PP_SVC_REDIS_PORT" shutdown nosave >/dev/null 2>&1
        if [ -n "$pid" ]; then
            for i in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
                : "$i"
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -TERM "$pid" 2>/dev/null
                sleep 1
                kill -KILL "$pid" 2>/dev/null
            fi
        fi
        PP_SVC_REDIS_STARTED=0
    fi
    if [ "${PP_SVC_PG_STARTED:-0}" = 1 ]; then
        _pp_log "stopping PostgreSQL"
        if [ -f "$PP_SVC_PG_DATA/postmaster.pid" ]; then
            _pp_as_pg "$PP_SVC_PG_BINDIR/pg_ctl" -D "$PP_SVC_PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 \
                || _pp_as_pg "$PP_SVC_PG_BINDIR/pg_ctl" -D "$PP_SVC_PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1
        fi
        PP_SVC_PG_STARTED=0
    fi
    if [ -n "${PP_SVC_TMP:-}" ]; then
        rm -rf -- "$PP_SVC_TMP"
        PP_SVC_TMP=
    fi
    if [ "${PP_SVC_SET_PG_URL:-0}" = 1 ]; then unset PP_TEST_PG_SUPER_URL; PP_SVC_SET_PG_URL=0; fi
    if [ "${PP_SVC_SET_REDIS_URL:-0}" = 1 ]; then unset PP_TEST_REDIS_URL; PP_SVC_SET_REDIS_URL=0; fi
    return 0
}

# Executed directly: start the services, print the exports, wait for Ctrl-C.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    exec "$_PP_SVC_LIB_DIR/dev-services.sh" "$@"
fi
