#!/usr/bin/env bash
# ProxPanel SaaS: PostgreSQL and Redis for local development, in the foreground.
#
#     ./infra/dev-services.sh
#
# Starts the same throwaway services as the test suite (infra/test-services.sh),
# creates a `proxpanel` database owned by proxpanel_owner, prints the
# environment to paste into another shell, and stops everything on Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=infra/test-services.sh
. "$ROOT/infra/test-services.sh"

trap pp_services_down EXIT
trap 'kill "${sleeper:-}" 2>/dev/null; exit 0' INT TERM
pp_services_up

hostport=${PP_TEST_PG_SUPER_URL#*@}
hostport=${hostport%%/*}
if [ "${PP_SVC_PG_STARTED:-0}" = 1 ]; then
    "$(_pp_psql)" -X -q -d "$PP_TEST_PG_SUPER_URL" -c 'CREATE DATABASE proxpanel OWNER proxpanel_owner' >/dev/null
fi

cat <<EOT

# Paste into another shell (services stop when this script ends):
export PP_TEST_PG_SUPER_URL='$PP_TEST_PG_SUPER_URL'
export PP_TEST_REDIS_URL='$PP_TEST_REDIS_URL'
export PROXPANEL_DATABASE_URL='postgres://proxpanel_app@$hostport/proxpanel'
export PROXPANEL_DATABASE_ADMIN_URL='postgres://proxpanel_owner@$hostport/proxpanel'
export PROXPANEL_DATABASE_SYSTEM_URL='postgres://proxpanel_system@$hostport/proxpanel'
export PROXPANEL_REDIS_URL='$PP_TEST_REDIS_URL'

Press Ctrl-C to stop.
EOT

while :; do
    sleep 3600 &
    sleeper=$!
    wait $! || true
done
