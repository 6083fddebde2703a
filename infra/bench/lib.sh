# shellcheck shell=bash
# Helpers shared by the benchmark scripts (sourced by infra/bench/radius.sh and relay.sh).

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# stop_pid PID [TENTHS]: TERM, wait up to TENTHS tenths of a second (default 100), then KILL.
stop_pid() {
    local pid=$1 tenths=${2:-100} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 "$tenths"); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        : "$i"
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    return 0
}

# wait_udp_for TENTHS PID PORT...: until every port has a UDP listener, or PID died, or the
# time is up.
wait_udp_for() {
    local tenths=$1 pid=$2 i p ok
    shift 2
    for i in $(seq 1 "$tenths"); do
        kill -0 "$pid" 2>/dev/null || return 1
        ok=1
        for p in "$@"; do
            [ -n "$(ss -Hlun "sport = :$p" 2>/dev/null)" ] || ok=0
        done
        [ "$ok" = 1 ] && return 0
        sleep 0.1
        : "$i"
    done
    return 1
}

# Percentage of CPU time idle over the next second (all CPUs, from /proc/stat).
cpu_idle_pct() {
    local a b
    a=$(awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    python3 -c "a=[int(x) for x in '$a'.split()]; b=[int(x) for x in '$b'.split()]; print(round(100*(b[0]-a[0])/max(1,b[1]-a[1])))"
}

# quiet_idle: until the machine is QUIET_IDLE % idle (other work on a shared box skews the
# figures), at most QUIET_WAIT seconds; prints the last idle %.
quiet_idle() {
    local idle waited=0
    idle=$(cpu_idle_pct)
    while [ "$idle" -lt "$QUIET_IDLE" ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
        [ "$waited" = 0 ] && log "machine busy (${idle}% idle): waiting up to ${QUIET_WAIT}s for ${QUIET_IDLE}%"
        sleep 4
        waited=$((waited + 5))
        idle=$(cpu_idle_pct)
    done
    printf '%s\n' "$idle"
}
