#!/usr/bin/env bash
# bench/outbound/run.sh — outbound delivery: tern's queue against Postfix,
# same run (see main.go for what each run does). Run it under the shared
# bench lock:  flock <lock file> bench/outbound/run.sh [flags of main.go]
#
#   ROUNDS=3 N=20000 bench/outbound/run.sh              DKIM on: postfix,
#       postfix-dkim (OpenDKIM), tern-smtp, tern-api; medians of the rounds
#   bench/outbound/run.sh -dkim=false -runs postfix,tern-smtp,tern-api
#   HOLD=100000 ROUNDS=1 bench/outbound/run.sh -runs x  queue memory only
#
# Needs root and the Debian postfix, opendkim and opendkim-tools packages.
set -eu
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/outbound" ./bench/outbound
"$WORK/outbound" -n "${N:-20000}" -rounds "${ROUNDS:-3}" -hold "${HOLD:-0}" "$@"
