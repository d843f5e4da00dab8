#!/usr/bin/env bash
# install-tool.sh NAME VERSION PACKAGE: go install PACKAGE@VERSION into ./bin
# unless ./bin/NAME already is that version (a stamp file records it).
# TOOL_GOFLAGS adds go build flags (e.g. -tags=...) to that install.
set -euo pipefail
name=$1 version=$2 pkg=$3
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
stamp=$bin/.$name.version
if [[ -x $bin/$name && -f $stamp && $(cat "$stamp") == "$version" ]]; then
	exit 0
fi
mkdir -p "$bin"
echo "installing $name $version"
# Outside the module, so the tool's own dependencies do not touch go.mod;
# into a scratch GOBIN, because some packages build a binary named after
# their folder (toxiproxy's cmd/server).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && GOBIN=$tmp/bin GOFLAGS="-mod=mod ${TOOL_GOFLAGS:-}" go install "$pkg@$version")
mv "$tmp/bin/"* "$bin/$name"
echo "$version" >"$stamp"
