#!/usr/bin/env bash
# shellcheck shell=bash
# shellcheck disable=SC2015,SC2016,SC2154  # A && B || die; sh -c scripts; S_* come from the state file
#
# ProxPanel SaaS: play a MikroTik router with a real WireGuard peer.
#
# Each router NAME is a Linux network namespace pp-NAME holding
#   - veth0: one end of a veth pair whose other end (pph<slot>) is on the host,
#            on a private /30 out of 172.29.0.0/16 (never 10.200.0.0/16, which
#            tunnels use); the namespace's default route points at the host end;
#   - wg0:   a wireguard-go (userspace) interface, MTU 1420, peered with the
#            relay at HOST-SIDE-VETH-IP:RELAY-PORT — the relay listens on
#            0.0.0.0 on the host, so that is how a router outside reaches it.
# State (key file 0600, wireguard-go log and pid, UAPI socket) lives in
# /run/proxpanel-e2e/NAME/.
#
# Usage: infra/e2e/wg-router.sh COMMAND NAME [ARGS]   (run as root)
#   up NAME --private-key B64 --address CIDR --relay-public-key B64
#           --relay-tunnel-address IP --relay-port PORT
#           [--keepalive SECS (25; 0 = off)] [--listen-port PORT (random)]
#           [--allowed-ips LIST (RELAY-TUNNEL-IP/32)] [--mtu N (1420)]
#           [--private-key-file FILE] [--peer-json FILE|-]
#       --peer-json reads a peer object as our CLI prints it: private_key,
#       tunnel_address (CIDR), relay_public_key, relay_tunnel_address,
#       relay_endpoint_port; options given on the command line win.
#       Prints key=value lines on stdout: name netns host_ip ns_ip veth
#       endpoint tunnel_address public_key listen_port log.
#   exec NAME -- CMD [ARGS...]    run CMD inside the namespace (exit code passed on;
#                                 `wg` there talks to this router's wg0)
#   status NAME                   wg show wg0 (handshake, transfer)
#   wait-handshake NAME [--timeout S (30)] [--after UNIX_TS] [--nudge]
#                                 wait for a handshake (newer than UNIX_TS);
#                                 --nudge sends one UDP datagram into the tunnel
#                                 first (for --keepalive 0); exit 1 on timeout
#   host-ip NAME | ns-ip NAME     print the host-side / namespace-side veth address
#   public-key NAME               print the router's WireGuard public key
#   info NAME                     print the router's state as key=value lines
#   set-endpoint NAME HOST:PORT   point the peer at another relay endpoint
#                                 (PORT alone: HOST is the host-side veth address)
#   set-listen-port NAME PORT     change the router's UDP source port (roaming as
#                                 the relay sees it); 0 = a random port
#   block NAME | unblock NAME     take the namespace's veth down / up again (the
#                                 router loses / regains its path to the relay)
#   down NAME                     kill wireguard-go (and anything else left in the
#                                 namespace), delete netns, veth and state;
#                                 idempotent
#   down-all                      down every router this harness created
#   list                          print the names of the routers that are up
#
# As a library: `. infra/e2e/wg-router.sh` defines ppwg COMMAND ARGS... and
# ppwg_up, ppwg_down, ppwg_exec, ppwg_status, ppwg_wait_handshake, ppwg_host_ip,
# ppwg_ns_ip, ppwg_public_key, ppwg_info, ppwg_set_endpoint, ppwg_set_listen_port,
# ppwg_block, ppwg_unblock, ppwg_down_all, ppwg_list (each runs this script, so
# the caller's shell options do not matter).
#
# Knobs (environment):
#   PP_E2E_RUN_DIR    state directory (default /run/proxpanel-e2e)
#   PP_E2E_VETH_NET   first two octets of the /16 the /30s come from (default 172.29)
#   PP_E2E_WG_LOG     wireguard-go LOG_LEVEL: verbose (default), error, silent

_PPWG_SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

# ---------------------------------------------------------------------------
# Library mode: thin wrappers that run this script in its own process.
# ---------------------------------------------------------------------------
ppwg() { "$_PPWG_SELF" "$@"; }
ppwg_up() { ppwg up "$@"; }
ppwg_down() { ppwg down "$@"; }
ppwg_exec() { ppwg exec "$@"; }
ppwg_status() { ppwg status "$@"; }
ppwg_wait_handshake() { ppwg wait-handshake "$@"; }
ppwg_host_ip() { ppwg host-ip "$@"; }
ppwg_ns_ip() { ppwg ns-ip "$@"; }
ppwg_public_key() { ppwg public-key "$@"; }
ppwg_info() { ppwg info "$@"; }
ppwg_set_endpoint() { ppwg set-endpoint "$@"; }
ppwg_set_listen_port() { ppwg set-listen-port "$@"; }
ppwg_block() { ppwg block "$@"; }
ppwg_unblock() { ppwg unblock "$@"; }
ppwg_down_all() { ppwg down-all "$@"; }
ppwg_list() { ppwg list "$@"; }

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    return 0 2>/dev/null
fi

# ---------------------------------------------------------------------------
# Command mode.
# ---------------------------------------------------------------------------
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

RUN_DIR=${PP_E2E_RUN_DIR:-/run/proxpanel-e2e}
VETH_NET=${PP_E2E_VETH_NET:-172.29}
WG_LOG_LEVEL=${PP_E2E_WG_LOG:-verbose}
SLOTS=16384 # /30s in a /16
INSTALL_HINT="run infra/e2e/install-wg.sh (as root)"
PROG="wg-router.sh"

log() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$1" >&2
    shift
    local l
    for l in "$@"; do printf '       %s\n' "$l" >&2; done
    exit 1
}
usage_die() { die "$1" "usage: see the header of infra/e2e/wg-router.sh ($PROG --help)"; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$PROG needs root (network namespaces, veth, /dev/net/tun): run it with sudo or as root"
}

need_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || die "$t not found: $INSTALL_HINT"
    done
}

valid_name() {
    [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] \
        || die "invalid router name '$1': use 1-40 characters [A-Za-z0-9_.-], starting with a letter or digit"
}

valid_key() { # WHAT VALUE
    [[ "$2" =~ ^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$ ]] \
        || die "$1 is not a WireGuard key (44 characters of base64): '$2'" "generate one with: wg genkey | tee priv | wg pubkey"
}

valid_ipv4() { # WHAT VALUE
    local re='^((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])$'
    [[ "$2" =~ $re ]] || die "$1 is not an IPv4 address: '$2'"
}

valid_port() { # WHAT VALUE [MIN]
    [[ "$2" =~ ^[0-9]{1,5}$ ]] && [ "$2" -ge "${3:-1}" ] && [ "$2" -le 65535 ] \
        || die "$1 is not a UDP port (${3:-1}-65535): '$2'"
}

ns_of() { printf 'pp-%s' "$1"; }
state_dir() { printf '%s/%s' "$RUN_DIR" "$1"; }
ns_exists() { [ -e "/run/netns/$(ns_of "$1")" ]; }

# Load NAME's state file into S_* variables; die with a hint if NAME is not up.
load_state() {
    local name=$1 f
    valid_name "$name"
    f="$(state_dir "$name")/state"
    if [ ! -f "$f" ]; then
        die "router '$name' is not up (no $f)" "bring it up with: $PROG up $name --private-key ... (see $PROG --help)"
    fi
    # shellcheck disable=SC1090  # written by write_state below with printf %q
    . "$f"
}

write_state() { # NAME KEY=VALUE... (merged into the existing state)
    local name=$1 f tmp kv
    shift
    f="$(state_dir "$name")/state"
    tmp="$f.tmp.$$"
    {
        if [ -f "$f" ]; then
            grep -v -E "^S_($(for kv in "$@"; do printf '%s|' "${kv%%=*}"; done)__none__)=" "$f" || true
        fi
        for kv in "$@"; do printf 'S_%s=%q\n' "${kv%%=*}" "${kv#*=}"; done
    } >"$tmp" || true
    mv -f "$tmp" "$f"
}

# The /30 of SLOT: prints "HOST_IP NS_IP".
slot_ips() {
    local s=$1 o3 o4
    o3=$((s / 64))
    o4=$(((s % 64) * 4))
    printf '%s.%d.%d %s.%d.%d\n' "$VETH_NET" "$o3" $((o4 + 1)) "$VETH_NET" "$o3" $((o4 + 2))
}

# Reserve a /30 for NAME. Starts at a slot derived from NAME (so a name usually
# gets the same addresses) and probes on; the reservation is a file in
# RUN_DIR/.slots made under an flock, so parallel `up`s never share a /30.
alloc_slot() {
    local name=$1 start s i ips host_ip
    mkdir -p "$RUN_DIR/.slots"
    start=$(($(printf '%s' "$name" | cksum | cut -d' ' -f1) % SLOTS))
    exec 9>"$RUN_DIR/.alloc.lock"
    flock -w 30 9 || die "could not lock $RUN_DIR/.alloc.lock within 30 s (a stuck $PROG?)"
    for ((i = 0; i < SLOTS; i++)); do
        s=$(((start + i) % SLOTS))
        [ -e "$RUN_DIR/.slots/$s" ] && continue
        ip link show "pph$s" >/dev/null 2>&1 && continue
        ips=$(slot_ips "$s")
        host_ip=${ips%% *}
        # Someone else's address inside this /30 on the host? Skip it.
        if ip -4 -o addr show | awk '{print $4}' | cut -d/ -f1 \
            | grep -q -E "^${VETH_NET//./\\.}\.$((s / 64))\.($(((s % 64) * 4))|$(((s % 64) * 4 + 1))|$(((s % 64) * 4 + 2))|$(((s % 64) * 4 + 3)))$"; then
            continue
        fi
        printf '%s\n' "$name" >"$RUN_DIR/.slots/$s"
        flock -u 9
        exec 9>&-
        printf '%s\n' "$s"
        return 0
    done
    flock -u 9
    die "no free /30 left in $VETH_NET.0.0/16: run $PROG down-all"
}

# Run CMD inside NAME's namespace with this router's private UAPI socket
# directory mounted on /run/wireguard (ip netns exec already gives the command
# its own mount namespace, so the bind mount is invisible outside; without it
# every router's wg0 would fight over /run/wireguard/wg0.sock).
in_ns() { # NAME CMD...
    local name=$1
    shift
    ip netns exec "$(ns_of "$name")" sh -c \
        'd=$1; shift; mount --bind "$d" /run/wireguard || { echo "error: cannot bind-mount $d on /run/wireguard" >&2; exit 125; }; exec "$@"' \
        ppwg "$(state_dir "$name")/sock" "$@"
}

# Alive and not a zombie (an init that reaps slowly leaves dead processes as
# zombies for a while; they hold no sockets or interfaces any more).
pid_alive() { # PID
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

wg_pid() { # NAME -> pid of its wireguard-go, if running
    local f pid
    f="$(state_dir "$1")/wireguard-go.pid"
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null) || return 0
    if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'wireguard-go'; then
        printf '%s\n' "$pid"
    fi
}

# Kill PIDs: TERM, then KILL what is still alive after 0.5 s (wireguard-go
# keeps no state worth a graceful exit, and takes ~1 s over TERM); wait up to 3 s.
kill_wait() {
    local pid i alive
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        alive=0
        for pid in "$@"; do pid_alive "$pid" && alive=1; done
        [ "$alive" = 1 ] || return 0
        [ "$i" != 10 ] || kill -KILL "$@" 2>/dev/null || true
        sleep 0.05
    done
}

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------
do_down() { # NAME [quiet]
    local name=$1 quiet=${2:-} dir ns pid pids slot sf
    valid_name "$name"
    dir=$(state_dir "$name")
    ns=$(ns_of "$name")
    if [ ! -d "$dir" ] && ! ns_exists "$name"; then
        [ -n "$quiet" ] || log "router '$name' is not up; nothing to do"
        return 0
    fi
    [ -n "$quiet" ] || log "taking router '$name' down"
    # wireguard-go and whatever a test left running in the namespace (servers
    # started with exec ... &), all at once.
    pid=$(wg_pid "$name")
    pids=
    if ns_exists "$name"; then
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
    fi
    # shellcheck disable=SC2086  # word splitting of the pid list is intended
    kill_wait $pid $pids
    if ns_exists "$name"; then
        ip netns del "$ns" 2>/dev/null || warn "could not delete netns $ns"
    fi
    slot=
    if [ -f "$dir/state" ]; then
        slot=$(sed -n 's/^S_slot=//p' "$dir/state" | tail -1)
    fi
    if [ -z "$slot" ]; then # crashed between reserving a slot and writing it down
        for sf in "$RUN_DIR"/.slots/*; do
            [ -f "$sf" ] && [ "$(cat "$sf" 2>/dev/null)" = "$name" ] && slot=${sf##*/}
        done
    fi
    if [ -n "$slot" ]; then
        ip link del "pph$slot" 2>/dev/null || true
        sf="$RUN_DIR/.slots/$slot"
        if [ -f "$sf" ] && [ "$(cat "$sf" 2>/dev/null)" = "$name" ]; then rm -f "$sf"; fi
    fi
    rm -rf -- "$dir"
    return 0
}

cmd_down() {
    [ $# -eq 1 ] || usage_die "usage: $PROG down NAME"
    need_root
    do_down "$1"
}

cmd_down_all() {
    [ $# -eq 0 ] || usage_die "usage: $PROG down-all"
    need_root
    local d n count=0 sf link s
    if [ -d "$RUN_DIR" ]; then
        for d in "$RUN_DIR"/*/; do
            [ -d "$d" ] || continue
            n=$(basename "$d")
            [[ "$n" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] || continue
            do_down "$n" quiet &
            count=$((count + 1))
        done
        wait
        # Reservations whose router is gone (crash during up).
        for sf in "$RUN_DIR"/.slots/*; do
            [ -f "$sf" ] || continue
            n=$(cat "$sf" 2>/dev/null || true)
            ip link del "pph${sf##*/}" 2>/dev/null || true
            if [ -n "$n" ] && ns_exists "$n"; then ip netns del "$(ns_of "$n")" 2>/dev/null || true; fi
            rm -f "$sf"
        done
    fi
    # Host-side veths of ours with no reservation at all.
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^pph[0-9]+$' || true); do
        s=${link#pph}
        [ -e "$RUN_DIR/.slots/$s" ] || ip link del "$link" 2>/dev/null || true
    done
    log "down-all: removed $count router(s)"
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------
# Print "key<TAB>value" lines from a peer JSON object (FILE or - for stdin).
read_peer_json() {
    local file=$1
    if [ "$file" != - ] && [ ! -r "$file" ]; then
        die "--peer-json: cannot read '$file'"
    fi
    python3 -c '
import json, sys
path = sys.argv[1]
try:
    data = json.load(sys.stdin if path == "-" else open(path))
except Exception as e:
    sys.exit("error: --peer-json %s: not valid JSON: %s" % (path, e))
if isinstance(data, dict) and "private_key" not in data:
    # Tolerate one level of wrapping, e.g. {"peer": {...}}.
    inner = [v for v in data.values() if isinstance(v, dict) and "private_key" in v]
    if len(inner) == 1:
        data = inner[0]
if not isinstance(data, dict):
    sys.exit("error: --peer-json %s: expected a JSON object" % path)
port = data.get("relay_endpoint_port")
if port is None and isinstance(data.get("relay_endpoint"), str) and ":" in data["relay_endpoint"]:
    port = data["relay_endpoint"].rsplit(":", 1)[1]
fields = {
    "private_key": data.get("private_key"),
    "address": data.get("tunnel_address"),
    "relay_public_key": data.get("relay_public_key"),
    "relay_tunnel_address": data.get("relay_tunnel_address"),
    "relay_port": port,
}
for k, v in fields.items():
    if v is None:
        continue
    v = str(v)
    if "\t" in v or "\n" in v:
        sys.exit("error: --peer-json %s: field for %s contains a tab or newline" % (path, k))
    print("%s\t%s" % (k, v))
' "$file"
}

cmd_up() {
    [ $# -ge 1 ] || usage_die "usage: $PROG up NAME --private-key B64 --address CIDR --relay-public-key B64 --relay-tunnel-address IP --relay-port PORT"
    local name=$1
    shift
    valid_name "$name"
    local priv="" priv_file="" address="" relay_pub="" relay_tip="" relay_port="" keepalive=25
    local listen_port="" allowed="" mtu=1420 peer_json="" opt val k v
    while [ $# -gt 0 ]; do
        opt=$1
        if [[ "$opt" == --*=* ]]; then
            val=${opt#*=}
            opt=${opt%%=*}
            shift
        else
            [ $# -ge 2 ] || usage_die "$opt needs a value"
            val=$2
            shift 2
        fi
        case "$opt" in
            --private-key) priv=$val ;;
            --private-key-file) priv_file=$val ;;
            --address) address=$val ;;
            --relay-public-key) relay_pub=$val ;;
            --relay-tunnel-address) relay_tip=$val ;;
            --relay-port) relay_port=$val ;;
            --keepalive) keepalive=$val ;;
            --listen-port) listen_port=$val ;;
            --allowed-ips) allowed=$val ;;
            --mtu) mtu=$val ;;
            --peer-json) peer_json=$val ;;
            *) usage_die "unknown option for up: $opt" ;;
        esac
    done

    need_root
    need_tools ip wg wireguard-go flock setsid mount
    if [ -n "$peer_json" ]; then
        need_tools python3
        local json_out
        json_out=$(read_peer_json "$peer_json") || exit 1
        while IFS=$'\t' read -r k v; do
            case "$k" in
                private_key) [ -n "$priv" ] || [ -n "$priv_file" ] || priv=$v ;;
                address) [ -n "$address" ] || address=$v ;;
                relay_public_key) [ -n "$relay_pub" ] || relay_pub=$v ;;
                relay_tunnel_address) [ -n "$relay_tip" ] || relay_tip=$v ;;
                relay_port) [ -n "$relay_port" ] || relay_port=$v ;;
            esac
        done <<<"$json_out"
    fi
    if [ -n "$priv_file" ]; then
        [ -r "$priv_file" ] || die "--private-key-file: cannot read '$priv_file'"
        priv=$(tr -d ' \n\r\t' <"$priv_file")
    fi
    [ -n "$priv" ] || usage_die "up: --private-key (or --private-key-file / --peer-json) is required"
    [ -n "$address" ] || usage_die "up: --address CIDR (the router's tunnel address, e.g. 10.200.0.2/24) is required"
    [ -n "$relay_pub" ] || usage_die "up: --relay-public-key is required"
    [ -n "$relay_tip" ] || usage_die "up: --relay-tunnel-address (e.g. 10.200.0.1) is required"
    [ -n "$relay_port" ] || usage_die "up: --relay-port (the relay's UDP port on the host, e.g. 51820) is required"
    valid_key "--private-key" "$priv"
    valid_key "--relay-public-key" "$relay_pub"
    [[ "$address" == */* ]] || address="$address/32"
    valid_ipv4 "--address" "${address%/*}"
    [[ "${address#*/}" =~ ^[0-9]{1,2}$ ]] && [ "${address#*/}" -le 32 ] || die "--address: bad prefix length in '$address'"
    relay_tip=${relay_tip%/32}
    valid_ipv4 "--relay-tunnel-address" "$relay_tip"
    valid_port "--relay-port" "$relay_port"
    [[ "$keepalive" =~ ^[0-9]+$ ]] && [ "$keepalive" -le 65535 ] || die "--keepalive must be 0-65535 seconds: '$keepalive'"
    [ -z "$listen_port" ] || valid_port "--listen-port" "$listen_port" 0
    [[ "$mtu" =~ ^[0-9]+$ ]] && [ "$mtu" -ge 576 ] && [ "$mtu" -le 65535 ] || die "--mtu must be 576-65535: '$mtu'"
    [ -n "$allowed" ] || allowed="$relay_tip/32"
    [ -c /dev/net/tun ] || die "/dev/net/tun is missing: $INSTALL_HINT (it creates it), or give the container the tun device"

    local dir ns
    dir=$(state_dir "$name")
    ns=$(ns_of "$name")
    mkdir -p "$RUN_DIR" /run/wireguard
    if ! mkdir "$dir" 2>/dev/null; then
        if ns_exists "$name" && [ -n "$(wg_pid "$name")" ]; then
            die "router '$name' is already up (netns $ns)" "take it down first: $PROG down $name"
        fi
        warn "removing stale state of router '$name' (left by a crash?)"
        do_down "$name" quiet
        mkdir "$dir" || die "cannot create $dir"
    elif ns_exists "$name"; then
        rmdir "$dir"
        die "netns $ns already exists but $PROG has no state for it" "delete it with: ip netns del $ns"
    fi
    chmod 700 "$dir"
    mkdir -m 700 "$dir/sock"

    # From here on, a failure takes down whatever was built.
    _UP_NAME=$name
    trap 'rc=$?; if [ $rc -ne 0 ]; then warn "up $_UP_NAME failed; cleaning up"; do_down "$_UP_NAME" quiet; fi' EXIT

    local slot ips host_ip ns_ip veth
    slot=$(alloc_slot "$name")
    ips=$(slot_ips "$slot")
    host_ip=${ips%% *}
    ns_ip=${ips##* }
    veth="pph$slot"
    write_state "$name" name="$name" netns="$ns" slot="$slot" veth="$veth" host_ip="$host_ip" ns_ip="$ns_ip" \
        address="$address" relay_public_key="$relay_pub" relay_tunnel_address="$relay_tip" \
        relay_port="$relay_port" endpoint="$host_ip:$relay_port" keepalive="$keepalive" blocked=0

    log "router '$name': netns $ns, veth $veth $host_ip/30 <-> veth0 $ns_ip/30"
    ip netns add "$ns"
    ip link add "$veth" type veth peer name veth0 netns "$ns"
    sysctl -q -w "net.ipv6.conf.$veth.disable_ipv6=1" 2>/dev/null || true
    ip addr add "$host_ip/30" dev "$veth"
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
    ip -n "$ns" addr add "$ns_ip/30" dev veth0
    ip -n "$ns" link set veth0 up
    ip -n "$ns" route add default via "$host_ip" dev veth0

    # wireguard-go in the foreground of a detached session (WG_PROCESS_FOREGROUND=1
    # also skips its "use the kernel module" banner), output to the log file.
    local keyf="$dir/private.key" pidf="$dir/wireguard-go.pid" logf="$dir/wireguard-go.log" i
    (umask 077 && printf '%s\n' "$priv" >"$keyf")
    log "starting wireguard-go wg0 in $ns (log: $logf)"
    (
        cd /
        exec setsid -w ip netns exec "$ns" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL="$WG_LOG_LEVEL" sh -c \
            'echo $$ >"$1"; mount --bind "$2" /run/wireguard || exit 125; exec wireguard-go wg0' \
            ppwg "$pidf" "$dir/sock" </dev/null >>"$logf" 2>&1
    ) &
    local bgpid=$!
    for ((i = 0; i < 200; i++)); do
        [ -S "$dir/sock/wg0.sock" ] && break
        if ! kill -0 "$bgpid" 2>/dev/null; then
            die "wireguard-go exited at start; its log ($logf):" "$(tail -n 20 "$logf" 2>/dev/null)"
        fi
        sleep 0.05
    done
    [ -S "$dir/sock/wg0.sock" ] || die "wireguard-go did not open its UAPI socket within 10 s; see $logf"

    local lp_args=()
    [ -z "$listen_port" ] || lp_args=(listen-port "$listen_port")
    in_ns "$name" wg set wg0 private-key "$keyf" "${lp_args[@]}"
    ip -n "$ns" addr add "$address" dev wg0
    ip -n "$ns" link set wg0 mtu "$mtu" up
    # Setting the peer last: with a keepalive, wireguard-go sends the first
    # keepalive (and so the handshake initiation) right away.
    in_ns "$name" wg set wg0 peer "$relay_pub" endpoint "$host_ip:$relay_port" \
        allowed-ips "$allowed" persistent-keepalive "$keepalive"

    local pub lport
    pub=$(printf '%s\n' "$priv" | wg pubkey)
    lport=$(in_ns "$name" wg show wg0 listen-port)
    write_state "$name" public_key="$pub" listen_port="$lport" allowed_ips="$allowed" mtu="$mtu" log="$logf"
    trap - EXIT
    log "router '$name' up: wg0 $address (public key $pub, udp $ns_ip:$lport) -> relay $host_ip:$relay_port ($relay_pub)"
    printf 'name=%s\nnetns=%s\nhost_ip=%s\nns_ip=%s\nveth=%s\nendpoint=%s\ntunnel_address=%s\npublic_key=%s\nlisten_port=%s\nlog=%s\n' \
        "$name" "$ns" "$host_ip" "$ns_ip" "$veth" "$host_ip:$relay_port" "$address" "$pub" "$lport" "$logf"
}

# ---------------------------------------------------------------------------
# the rest
# ---------------------------------------------------------------------------
require_running() { # NAME (state loaded)
    ns_exists "$1" || die "netns $(ns_of "$1") of router '$1' is gone: clean up with $PROG down $1, then bring it up again"
    [ -n "$(wg_pid "$1")" ] || die "wireguard-go of router '$1' is not running; see $(state_dir "$1")/wireguard-go.log" \
        "restart it with: $PROG down $1 && $PROG up $1 ..."
}

cmd_exec() {
    [ $# -ge 1 ] || usage_die "usage: $PROG exec NAME -- CMD [ARGS...]"
    local name=$1
    shift
    [ "${1:-}" != -- ] || shift
    [ $# -ge 1 ] || usage_die "usage: $PROG exec NAME -- CMD [ARGS...]"
    need_root
    load_state "$name"
    ns_exists "$name" || die "netns $(ns_of "$name") of router '$name' is gone: $PROG down $name, then up again"
    in_ns "$name" "$@"
}

cmd_status() {
    [ $# -eq 1 ] || usage_die "usage: $PROG status NAME"
    need_root
    load_state "$1"
    require_running "$1"
    [ "${S_blocked:-0}" = 0 ] || note "router '$1' is blocked (veth0 down): $PROG unblock $1"
    in_ns "$1" wg show wg0
}

cmd_wait_handshake() {
    [ $# -ge 1 ] || usage_die "usage: $PROG wait-handshake NAME [--timeout S] [--after UNIX_TS] [--nudge]"
    local name=$1 timeout=30 after=0 nudge=0 deadline now latest
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --timeout) [ $# -ge 2 ] || usage_die "--timeout needs a value"; timeout=$2; shift 2 ;;
            --timeout=*) timeout=${1#*=}; shift ;;
            --after) [ $# -ge 2 ] || usage_die "--after needs a value"; after=$2; shift 2 ;;
            --after=*) after=${1#*=}; shift ;;
            --nudge) nudge=1; shift ;;
            *) usage_die "unknown option for wait-handshake: $1" ;;
        esac
    done
    [[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds: '$timeout'"
    [[ "$after" =~ ^[0-9]+$ ]] || die "--after must be a Unix time in seconds: '$after'"
    need_root
    load_state "$name"
    require_running "$name"
    if [ "$nudge" = 1 ]; then
        # One datagram to the discard port of the relay's tunnel address: wg0
        # has to handshake before it can send it.
        in_ns "$name" bash -c 'echo nudge >/dev/udp/$1/9' ppwg "$S_relay_tunnel_address" 2>/dev/null || true
    fi
    deadline=$(($(date +%s%N) / 1000000 + timeout * 1000))
    while :; do
        latest=$(in_ns "$name" wg show wg0 latest-handshakes | awk 'BEGIN{m=0} $2>m{m=$2} END{print m}')
        if [ "${latest:-0}" -gt "$after" ]; then
            now=$(date +%s)
            log "router '$name': handshake with the relay at $latest ($((now - latest)) s ago)"
            printf '%s\n' "$latest"
            return 0
        fi
        [ $(($(date +%s%N) / 1000000)) -lt "$deadline" ] || break
        sleep 0.2
    done
    in_ns "$name" wg show wg0 >&2 || true
    local why="no handshake"
    [ "$after" = 0 ] || why="no handshake newer than $after"
    die "router '$name': $why with the relay within $timeout s" \
        "check that the relay listens on UDP ${S_endpoint} (on the host: ss -ulpn | grep ${S_endpoint##*:})," \
        "that it knows this router's public key ${S_public_key:-?} with tunnel address ${S_address}," \
        "and that the router is not blocked ($PROG unblock $name); wireguard-go log: ${S_log:-$(state_dir "$name")/wireguard-go.log}"
}

cmd_print() { # FIELD NAME
    [ $# -eq 2 ] || usage_die "usage: $PROG ${1//_/-} NAME"
    local field=$1 var
    load_state "$2"
    var="S_$field"
    printf '%s\n' "${!var}"
}

cmd_info() {
    [ $# -eq 1 ] || usage_die "usage: $PROG info NAME"
    load_state "$1"
    sed -n 's/^S_//p' "$(state_dir "$1")/state"
    printf 'wireguard_go_pid=%s\n' "$(wg_pid "$1")"
}

cmd_set_endpoint() {
    [ $# -eq 2 ] || usage_die "usage: $PROG set-endpoint NAME HOST:PORT (or PORT for the host-side veth address)"
    local name=$1 ep=$2 host port
    need_root
    load_state "$name"
    require_running "$name"
    if [[ "$ep" =~ ^[0-9]+$ ]]; then ep="$S_host_ip:$ep"; fi
    host=${ep%:*}
    port=${ep##*:}
    [[ "$ep" == *:* ]] || die "set-endpoint: expected HOST:PORT, got '$ep'"
    valid_ipv4 "set-endpoint host" "$host"
    valid_port "set-endpoint port" "$port"
    in_ns "$name" wg set wg0 peer "$S_relay_public_key" endpoint "$ep"
    write_state "$name" endpoint="$ep"
    log "router '$name': relay endpoint is now $ep"
}

cmd_set_listen_port() {
    [ $# -eq 2 ] || usage_die "usage: $PROG set-listen-port NAME PORT (0 = random)"
    local name=$1 port=$2 lport
    need_root
    valid_port "set-listen-port" "$port" 0
    load_state "$name"
    require_running "$name"
    in_ns "$name" wg set wg0 listen-port "$port"
    lport=$(in_ns "$name" wg show wg0 listen-port)
    write_state "$name" listen_port="$lport"
    log "router '$name': now sends from udp $S_ns_ip:$lport"
    printf '%s\n' "$lport"
}

cmd_block() {
    [ $# -eq 1 ] || usage_die "usage: $PROG block NAME"
    need_root
    load_state "$1"
    ns_exists "$1" || die "netns $(ns_of "$1") of router '$1' is gone: $PROG down $1"
    ip -n "$(ns_of "$1")" link set veth0 down
    write_state "$1" blocked=1
    log "router '$1' blocked: veth0 down, no path to the relay (unblock: $PROG unblock $1)"
}

cmd_unblock() {
    [ $# -eq 1 ] || usage_die "usage: $PROG unblock NAME"
    need_root
    load_state "$1"
    ns_exists "$1" || die "netns $(ns_of "$1") of router '$1' is gone: $PROG down $1"
    local ns i
    ns=$(ns_of "$1")
    ip -n "$ns" link set veth0 up
    # The default route went away with the link; it can only come back once
    # the link has carrier again.
    for ((i = 0; i < 50; i++)); do
        ip -n "$ns" route replace default via "$S_host_ip" dev veth0 2>/dev/null && break
        sleep 0.1
    done
    ip -n "$ns" route show default | grep -q . || die "could not restore the default route in $ns"
    write_state "$1" blocked=0
    log "router '$1' unblocked: veth0 up"
}

cmd_list() {
    local d
    [ -d "$RUN_DIR" ] || return 0
    for d in "$RUN_DIR"/*/; do
        [ -f "$d/state" ] && basename "$d"
    done
    return 0
}

main() {
    local cmd=${1:-}
    [ $# -eq 0 ] || shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        down-all) cmd_down_all "$@" ;;
        exec) cmd_exec "$@" ;;
        status) cmd_status "$@" ;;
        wait-handshake) cmd_wait_handshake "$@" ;;
        host-ip) cmd_print host_ip "$@" ;;
        ns-ip) cmd_print ns_ip "$@" ;;
        public-key) cmd_print public_key "$@" ;;
        info) cmd_info "$@" ;;
        set-endpoint) cmd_set_endpoint "$@" ;;
        set-listen-port) cmd_set_listen_port "$@" ;;
        block) cmd_block "$@" ;;
        unblock) cmd_unblock "$@" ;;
        list) cmd_list "$@" ;;
        -h | --help | help)
            sed -n '4,56p' "$_PPWG_SELF" | sed 's/^# \{0,1\}//'
            ;;
        "") usage_die "no command given" ;;
        *) usage_die "unknown command '$cmd'" ;;
    esac
}

main "$@"
