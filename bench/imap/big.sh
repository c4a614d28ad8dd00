#!/bin/sh
# Big-mailbox benchmark: N generated messages (default 1,000,000) imported
# into one INBOX with the code of `tern import`, then SELECT, UID FETCH 1:*
# (FLAGS) and header SEARCH timings and the server's memory.
#
#   bench/imap/big.sh            # N=1000000
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-1000000}
PORT=${PORT:-21146}
TMP=$(mktemp -d /tmp/imapbig.XXXXXX)
PID=""
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
(cd "$ROOT" && go build -o "$TMP/imapbench" ./bench/imap)
"$TMP/imapbench" bigprepare -data "$TMP/tern" -n "$N"
"$TMP/imapbench" serve -data "$TMP/tern" -addr "127.0.0.1:$PORT" &
PID=$!
sleep 2
"$TMP/imapbench" bigquery -addr "127.0.0.1:$PORT" -pid "$PID"
