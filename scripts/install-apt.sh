#!/usr/bin/env bash
# install-apt.sh CHECK PACKAGE...: apt-get install PACKAGEs unless the file
# or command CHECK already exists. Debian packages the tests need (varnish, chromium,
# pgbouncer).
set -euo pipefail
check=$1
shift
if [[ -e $check ]] || command -v "$check" >/dev/null 2>&1; then
	exit 0
fi
sudo=""
if [[ $(id -u) != 0 ]]; then
	command -v sudo >/dev/null || { echo "install-apt: need root or sudo to install $*" >&2; exit 1; }
	sudo=sudo
fi
echo "installing $* (apt-get)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
