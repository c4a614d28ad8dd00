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
#
# Measured 2026-11-22 on a shared 2-core VM (other jobs running; Postfix
# moved 470-815 msgs/s between rounds), N=20000, 20 sessions, 20
# connections per destination, medians of 3 rounds (ratios: medians of the
# same-round ratios):
#   DKIM on (tern: Ed25519 + RSA-2048)   msgs/s   tern-smtp   tern-api
#     postfix, unsigned                  777      1.35x       1.88x
#     postfix + 2 OpenDKIM milters       253      4.01x       5.55x
#     tern-smtp 1052, tern-api 1457
#   DKIM off                             msgs/s   tern-smtp   tern-api
#     postfix, unsigned                  698      3.57x       8.24x
#     tern-smtp 2524, tern-api 5442
# With DKIM on, crypto/rsa's RSA-2048 signature is 65% of tern's CPU
# (0.92 ms a message); everything else of DKIM is 0.05 ms (Ed25519 0.02).
# Queue memory, 2026-12-06 (HOLD=100000 -runs x): 100,000 messages waiting
# for a down destination; Go heap in use 2.3 MiB at 10,000, 2.0 MiB at
# 100,000; RSS 29.6 -> 62.4 MiB, outside the Go heap (Go's sys stays at
# 17 MiB): the database file mapped by the readers and SQLite's page
# caches, both bounded by configuration, not by the queue's length.
set -eu
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/outbound" ./bench/outbound
"$WORK/outbound" -n "${N:-20000}" -rounds "${ROUNDS:-3}" -hold "${HOLD:-0}" "$@"
