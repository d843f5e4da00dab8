#!/usr/bin/env bash
# Writes deploy/compose/.env for `docker compose up`: .env.example with every
# empty *_SECRET and *_PASSWORD variable (the secrets compose refuses to
# start without) set to a new random value, mode 0600.
#
#   deploy/compose/init-env.sh [FILE]     # FILE: default deploy/compose/.env
#
# An existing file is kept: only the secrets it lacks (missing or empty) are
# added, so running it again changes nothing and an older .env gains the
# secrets introduced since. Values are hex (letters and digits): they go
# into URLs and into IDENTITY_CLIENT_SECRETS' "client=secret,..." list.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
example=$here/.env.example
out=${1:-$here/.env}
umask 077

# rand N prints N random bytes as 2N hex digits.
rand() {
	if command -v openssl >/dev/null 2>&1; then
		openssl rand -hex "$1"
	else
		od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
		echo
	fi
}

# The secrets: empty NAME= lines of .env.example whose name ends in
# _SECRET or _PASSWORD.
secrets=$(sed -n 's/^\([A-Z0-9_]*_\(SECRET\|PASSWORD\)\)=$/\1/p' "$example")
[[ -n $secrets ]] || {
	echo "init-env: no empty *_SECRET or *_PASSWORD variable in $example" >&2
	exit 1
}

value() {
	case $1 in
	SHOPFLOOR_DEMO_PASSWORD) rand 12 ;; # people type it into the sign-in form
	*) rand 24 ;;
	esac
}

tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
if [[ -e $out ]]; then
	# Keep every line except empty definitions of secrets, then add the
	# secrets that have no value.
	added=()
	grep -v -E "^($(tr '\n' '|' <<<"$secrets" | sed 's/|$//'))=$" "$out" >"$tmp" || true
	for name in $secrets; do
		if ! grep -q -E "^$name=.+" "$tmp"; then
			printf '%s=%s\n' "$name" "$(value "$name")" >>"$tmp"
			added+=("$name")
		fi
	done
	if ((${#added[@]} == 0)); then
		echo "init-env: $out has every secret; left as it is"
		exit 0
	fi
	chmod 0600 "$tmp"
	mv "$tmp" "$out"
	echo "init-env: added ${added[*]} to $out"
else
	while IFS= read -r line || [[ -n $line ]]; do
		name=${line%%=*}
		if [[ $line == "$name=" ]] && grep -qx "$name" <<<"$secrets"; then
			line="$name=$(value "$name")"
		fi
		printf '%s\n' "$line"
	done <"$example" >"$tmp"
	chmod 0600 "$tmp"
	# ln, not mv: it fails instead of replacing a file created meanwhile.
	ln "$tmp" "$out"
	echo "init-env: wrote $out (mode 0600) with new secrets; the demo password is SHOPFLOOR_DEMO_PASSWORD"
fi
if grep -q '^ADMIN_TOKEN=' "$out"; then
	echo "init-env: $out still sets ADMIN_TOKEN, which nothing reads any more (admin routes take an operator's token): delete it" >&2
fi
