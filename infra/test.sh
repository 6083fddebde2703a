#!/usr/bin/env bash
# ProxPanel SaaS: the test command.
#
#     ./infra/test.sh [extra cargo-nextest args...]
#
# Starts a throwaway PostgreSQL and Redis (infra/test-services.sh; installs
# them with apt-get when missing and running as root), installs the end-to-end
# tools (radclient from freeradius-utils; pyrad, pycryptodome, librouteros and schemathesis with pip;
# wireguard-go, wg and friends for the real-peer harness via
# infra/e2e/install-wg.sh; Debian's chromium and, with npm ci, playwright-core for the
# browser test of the web panel), checks the dependency
# tree for a single TLS crypto backend (ring), then runs
#     cargo nextest run --workspace --all-targets --no-fail-fast "$@"
# Works from any directory. CI runs it via .ci/run as root with CI=true.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# shellcheck source=infra/test-services.sh
. "$ROOT/infra/test-services.sh"

# Debian packages later test suites need; installed (as root) when missing.
EXTRA_APT_PACKAGES=(
    freeradius-utils     # radclient, for RADIUS end-to-end tests (tests/it/radius.rs)
    dnsutils             # dig, for DNS end-to-end tests (tests/it/dns.rs)
    pebble               # the ACME test server, for the certificate end-to-end test (tests/it/acme.rs)
    openssl              # openssl verify / s_client in tests/it/acme.rs
    curl                 # HTTPS client in tests/it/acme.rs
    chromium             # headless browser of the web panel's browser test (tests/it/web.rs)
    fonts-liberation     # readable text in its screenshots
)

# Python packages (PyPI) the end-to-end scripts in infra/e2e/ need, and the import that proves
# they are usable: pyrad (a RADIUS client we did not write; 2.6 has enforce_ma) and pycryptodome
# (MD4 and DES for MS-CHAPv2, which OpenSSL 3's hashlib lacks); librouteros (a RouterOS API client
# we did not write) checks the simulator's wire format (saas-core routeros_sim tests);
# schemathesis (an OpenAPI property-based tester) runs against `serve --demo`'s API
# (tests/it/schemathesis.rs).
PY_PACKAGES=("pyrad>=2.6" pycryptodome "librouteros>=3.2" "schemathesis>=4.30,<5")
PY_IMPORT_CHECK='import inspect, shutil, pyrad.client, Crypto.Hash.MD4, Crypto.Cipher.DES, librouteros, schemathesis
assert "enforce_ma" in inspect.signature(pyrad.client.Client).parameters, "pyrad too old"
assert shutil.which("schemathesis"), "the schemathesis command is not on PATH"'

# Crates that must not be in the dependency tree: the one TLS crypto backend is ring.
FORBIDDEN_CRATES=(aws-lc-rs aws-lc-sys openssl-sys)

if [ -n "${CI:-}" ]; then
    export CARGO_TERM_COLOR=never
fi

phase() { printf '==> %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust (https://rustup.rs)" >&2
    exit 1
fi

if [ "${#EXTRA_APT_PACKAGES[@]}" -gt 0 ]; then
    missing=()
    for pkg in "${EXTRA_APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        phase "installing test tools: ${missing[*]}"
        pp_apt_install "${missing[@]}"
    fi
fi

# wireguard-go, wireguard-tools, ping, socat, ... for the real-peer WireGuard harness
# (infra/e2e/wg-router.sh); apt-get only when something is missing.
"$ROOT/infra/e2e/install-wg.sh"

# pip into whatever python3 is first on PATH (pyenv, a venv, or Debian's, which refuses a plain
# `pip install` as "externally managed" and needs --break-system-packages).
ensure_python_packages() {
    if ! command -v python3 >/dev/null 2>&1; then
        phase "installing python3"
        pp_apt_install python3 python3-pip
    fi
    if python3 -c "$PY_IMPORT_CHECK" >/dev/null 2>&1; then
        return 0
    fi
    phase "installing Python test packages: ${PY_PACKAGES[*]}"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        pp_apt_install python3-pip
    fi
    local pip=(python3 -m pip install --quiet --disable-pip-version-check --upgrade)
    export PIP_ROOT_USER_ACTION=ignore
    if ! "${pip[@]}" "${PY_PACKAGES[@]}"; then
        echo "    retrying with --break-system-packages" >&2
        "${pip[@]}" --break-system-packages "${PY_PACKAGES[@]}"
    fi
    if ! python3 -c "$PY_IMPORT_CHECK"; then
        echo "error: ${PY_PACKAGES[*]} installed but not importable by $(command -v python3)" >&2
        return 1
    fi
}
ensure_python_packages

# Node.js and the browser test's npm packages (playwright-core only; it drives Debian's chromium,
# so no browser download: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD). `npm ci` when the lock file changed.
ensure_node_packages() {
    local dir="$ROOT/infra/e2e/web"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        phase "installing Node.js"
        pp_apt_install nodejs npm
    fi
    if [ ! -d "$dir/node_modules/playwright-core" ] \
        || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        phase "installing the browser test's npm packages (npm ci in infra/e2e/web)"
        (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    fi
}
ensure_node_packages

if ! cargo nextest --version >/dev/null 2>&1; then
    phase "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

# --- dependency checks -------------------------------------------------------
# A crate is absent when `cargo tree -i` says it "did not match any packages".
check_forbidden_crate() {
    local crate=$1 out errf rc
    errf=$(mktemp)
    set +e
    out=$(cargo tree --workspace -i "$crate" 2>"$errf")
    rc=$?
    set -e
    if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
        rm -f "$errf"
        return 0
    fi
    if [ "$rc" -ne 0 ] && grep -q 'did not match any packages' "$errf"; then
        rm -f "$errf"
        return 0
    fi
    if [ "$rc" -eq 0 ] || grep -q 'multiple' "$errf"; then
        echo "error: '$crate' is in the dependency tree; the only TLS crypto backend must be ring." >&2
        echo "       Disable the default features that pull it in (rustls, sqlx, reqwest, ...):" >&2
        [ -n "$out" ] && printf '%s\n' "$out" >&2
        cat "$errf" >&2
        rm -f "$errf"
        return 1
    fi
    echo "error: 'cargo tree --workspace -i $crate' failed:" >&2
    cat "$errf" >&2
    rm -f "$errf"
    return 1
}

phase "checking the dependency tree: one TLS crypto backend (ring; no ${FORBIDDEN_CRATES[*]})"
for crate in "${FORBIDDEN_CRATES[@]}"; do
    check_forbidden_crate "$crate"
done

# --- services ----------------------------------------------------------------
trap pp_services_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
pp_services_up

# --- tests -------------------------------------------------------------------
phase "running tests: cargo nextest run --workspace --all-targets --no-fail-fast $*"
cargo nextest run --workspace --all-targets --no-fail-fast "$@"
phase "tests passed"
