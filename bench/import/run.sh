#!/usr/bin/env bash
# Import benchmark: the spam-assassin corpus and a generated mbox (default
# 1,000,000 messages of ~2 KiB) into fresh data directories; prints
# messages/s and peak RSS. Extra arguments go to the program (e.g. -n 100000).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/bench-import" ./bench/import
"$bin/bench-import" "$@"
