#!/usr/bin/env bash
# Prints an access token of a demo user (ada, grace: customers; oscar: an
# operator) from the sandbox identity provider of the running system, for
# curl: curl -H "Authorization: Bearer $(make -s token USER=ada)" ...
#
# make run / make start (while it runs): the issuer and the demo password
# are in the run directory (identity.env, written by deploy/local/run.sh,
# mode 0600).
# compose: the issuer is http://localhost:8090 and the password is
# SHOPFLOOR_DEMO_PASSWORD from deploy/compose/.env.
set -euo pipefail
cd "$(dirname "$0")/.."
user=${1:?usage: scripts/token.sh USER (ada, grace, oscar)}
run=${SHOPFLOOR_RUN_DIR:-$PWD/.run}
running() { [[ -f $run/run.pid ]] && kill -0 "$(cat "$run/run.pid")" 2>/dev/null; }
if running && [[ -f $run/identity.env ]]; then
	# shellcheck disable=SC1091
	source "$run/identity.env"
elif [[ -f deploy/compose/.env ]]; then
	IDENTITY_DEMO_PASSWORD=$(sed -n 's/^SHOPFLOOR_DEMO_PASSWORD=//p' deploy/compose/.env)
	IDENTITY_ISSUER=${IDENTITY_ISSUER:-http://localhost:8090}
else
	echo "token: no running system found: make start (or docker compose up with deploy/compose/.env)" >&2
	exit 1
fi
bin=$run/identity
[[ -x $bin ]] || bin="go run ./services/identity/cmd/identity"
IDENTITY_ISSUER=$IDENTITY_ISSUER IDENTITY_DEMO_PASSWORD=$IDENTITY_DEMO_PASSWORD $bin token "$user"
