#!/usr/bin/env bash
# ProxPanel SaaS: install what the real-peer WireGuard test harness needs.
#
#     infra/e2e/install-wg.sh [--check]
#
# Installs, from Debian with apt-get and only when something is missing:
#     wireguard-go      userspace WireGuard (the "router" side; no kernel module needed)
#     wireguard-tools   wg (genkey, pubkey, set, show)
#     iproute2          ip (netns, veth, addresses)
#     iputils-ping      ping
#     freeradius-utils  radclient (RADIUS end-to-end tests over the tunnel)
#     python3           JSON parsing in wg-router.sh, UDP one-liners in tests
#     socat             ad-hoc UDP/TCP servers and clients in tests
# and makes sure /dev/net/tun exists (creates it, or warns). apt-get update runs only when a package is
# missing. Idempotent: a second run installs nothing and prints one line.
# Non-interactive (DEBIAN_FRONTEND=noninteractive); works as root in CI
# (CI=true, no terminal). Not root: prints what to install and fails.
#
# --check: install nothing, exit 1 (and say what is missing) if anything is.
set -euo pipefail

_PP_E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../test-services.sh
. "$_PP_E2E_DIR/../test-services.sh" # pp_apt_install, _pp_log, _pp_err

# command  Debian package that provides it
WG_HARNESS_TOOLS=(
    "wireguard-go wireguard-go"
    "wg wireguard-tools"
    "ip iproute2"
    "ping iputils-ping"
    "radclient freeradius-utils"
    "python3 python3"
    "socat socat"
    "flock util-linux"
    "unshare util-linux"
    "setsid util-linux"
    "mount mount"
)

# Is CMD on PATH (including the sbin directories a non-login root shell may lack)?
_pp_have_cmd() {
    PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1
}

pp_wg_harness_missing_packages() {
    local entry cmd pkg seen=" "
    for entry in "${WG_HARNESS_TOOLS[@]}"; do
        cmd=${entry%% *}
        pkg=${entry##* }
        if ! _pp_have_cmd "$cmd" && [[ "$seen" != *" $pkg "* ]]; then
            seen+="$pkg "
            printf '%s\n' "$pkg"
        fi
    done
}

pp_ensure_tun() {
    [ -c /dev/net/tun ] && return 0
    if ! _pp_is_root; then
        _pp_err "/dev/net/tun is missing; wireguard-go needs it (as root: mkdir -p /dev/net && mknod /dev/net/tun c 10 200)"
        return 1
    fi
    _pp_log "creating /dev/net/tun"
    mkdir -p /dev/net
    mknod -m 0666 /dev/net/tun c 10 200 || {
        _pp_err "cannot create /dev/net/tun (a container without the tun device? run it with --device /dev/net/tun)"
        return 1
    }
}

main() {
    local check=0 missing=()
    case "${1:-}" in
        --check) check=1 ;;
        "") ;;
        -h | --help)
            sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            return 0
            ;;
        *)
            _pp_err "unknown argument: $1 (usage: infra/e2e/install-wg.sh [--check])"
            return 2
            ;;
    esac
    mapfile -t missing < <(pp_wg_harness_missing_packages)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$check" = 1 ]; then
            _pp_err "missing packages for the WireGuard test harness: ${missing[*]} (run infra/e2e/install-wg.sh as root)"
            return 1
        fi
        _pp_log "installing WireGuard test harness tools: ${missing[*]}"
        pp_apt_install "${missing[@]}"
        mapfile -t missing < <(pp_wg_harness_missing_packages)
        if [ "${#missing[@]}" -gt 0 ]; then
            _pp_err "still missing after apt-get install: ${missing[*]}"
            return 1
        fi
    fi
    if [ "$check" = 1 ]; then
        [ -c /dev/net/tun ] || { _pp_err "/dev/net/tun is missing"; return 1; }
    else
        # Without the tun device only the harness is unusable (wg-router.sh up
        # says so); the rest of the test suite need not fail for it.
        pp_ensure_tun || _pp_warn "the WireGuard harness (infra/e2e/wg-router.sh) will not work without /dev/net/tun"
    fi
    _pp_log "WireGuard test harness tools present ($(wireguard-go --version 2>/dev/null | head -1 || echo 'wireguard-go ?'); $(wg --version 2>/dev/null | head -1 || echo 'wg ?'))"
}

main "$@"
