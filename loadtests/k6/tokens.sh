#!/usr/bin/env bash
# tokens.sh [N]: signs in the synthetic customers load-k6-1 … load-k6-N
# (default 10) at the running system's sandbox identity provider and prints
# their access tokens on one line, comma-separated: what checkout.js reads
# from TOKENS. `make loadtest SCRIPT=checkout` runs it.
#
# Each token comes from scripts/token.sh (the issuer and the demo password
# of the run directory's identity.env, or of compose's .env). The provider
# must accept "load-" users as customers: make run / make start set
# IDENTITY_SYNTHETIC_CUSTOMER_PREFIX=load-. Tokens live an hour.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10}
if ! [[ $n =~ ^[1-9][0-9]{0,3}$ ]]; then
	echo "usage: loadtests/k6/tokens.sh [N]  (1..9999 customers; default 10)" >&2
	exit 2
fi
tokens=()
for ((i = 1; i <= n; i++)); do
	if ! t=$(scripts/token.sh "load-k6-$i"); then
		echo "tokens: load-k6-$i could not sign in (is the system running, with IDENTITY_SYNTHETIC_CUSTOMER_PREFIX=load-?)" >&2
		exit 1
	fi
	tokens+=("$t")
done
(
	IFS=,
	echo "${tokens[*]}"
)
