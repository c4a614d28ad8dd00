#!/usr/bin/env bash
# Import benchmark: the spam-assassin corpus and a generated mbox (default
# 1,000,000 messages of ~2 KiB) into fresh data directories; prints
# messages/s and peak RSS. Extra arguments go to the program (e.g. -n 100000).
#
# 2026-12-06, 2 cores (shared), tern only (-dovecot=false -export ""):
#   corpus (6,046 msgs)      1728 msg/s, peak RSS 59.5 MiB
#   1,000,000 x 2 KiB mbox   1086 msg/s (920 s), peak RSS 58.0 MiB
# Memory is flat: the same peak for 6 thousand and 1 million messages.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/bench-import" ./bench/import
"$bin/bench-import" "$@"
