#!/bin/sh
# Big-mailbox benchmark: N generated messages (default 1,000,000) imported
# into one INBOX with the code of `tern import`, then SELECT, UID FETCH 1:*
# (FLAGS) and header SEARCH timings and the server's memory.
#
#   bench/imap/big.sh            # N=1000000
#   N=200000 KEEP=DIR CPUPROFILE=cpu.pprof bench/imap/big.sh
#
# KEEP keeps the prepared data directory in DIR and reuses it when it is
# already there; CPUPROFILE writes the server's CPU profile.
#
# Measured 2026-11-22 (shared 2-core VM), N=1000000: SELECT 4-6 ms,
# UID FETCH 1:* (FLAGS) 1.7 s (was 4.1 s), SEARCH HEADER Subject 1.9 s
# (was 23 s), SEARCH SUBJECT 1.8 s; server RSS 24 MiB after the queries,
# peak 53 MiB.
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
DATA=$TMP/tern
[ -n "${KEEP:-}" ] && DATA=$KEEP/tern
if [ ! -d "$DATA" ]; then
	"$TMP/imapbench" bigprepare -data "$DATA" -n "$N"
fi
PROF=""
if [ -n "${CPUPROFILE:-}" ]; then
	case "$CPUPROFILE" in /*) ;; *) CPUPROFILE=$(pwd)/$CPUPROFILE ;; esac
	PROF="-cpuprofile $CPUPROFILE"
fi
# shellcheck disable=SC2086
"$TMP/imapbench" serve -data "$DATA" -addr "127.0.0.1:$PORT" $PROF &
PID=$!
sleep 2
"$TMP/imapbench" bigquery -addr "127.0.0.1:$PORT" -pid "$PID"
kill -TERM "$PID"
wait "$PID" || true
PID=""
