#!/usr/bin/env bash
# bench/smtp/run.sh — inbound SMTP throughput: tern against Postfix, same run.
#
# smtp-source (from the postfix package) sends N messages of LEN bytes, one
# connection per message, with 1, 20 and 100 parallel sessions, to:
#   - tern serve (fresh data directory per run): a 250 is sent only once
#     the message is fsynced and committed, so the rate is smtp-source's;
#   - Postfix 3.x (own config, queue and mail directories, loopback, high
#     port), delivering to a Maildir with virtual(8): counted when the last
#     message is in the Maildir.
# Prints messages/s for both, the ratio, and tern's peak RSS.
#
# Usage: bench/smtp/run.sh            (N=20000 SESSIONS="1 20 100" LEN=2048)
#        N=2000 SESSIONS=20 bench/smtp/run.sh   (a quick look)
# Needs root (Postfix's master runs as root and drops privileges).
#
# Measured 2026-12-05 on a shared 2-core VM, N=20000, three runs, medians
# (ratios: medians of the same-run ratios):
#   sessions   tern msg/s   postfix msg/s   ratio   tern peak RSS
#   1          634          359             1.76x   54 MiB
#   20         1543         426             3.62x   55 MiB
#   100        2032         390             5.24x   56 MiB
# Messages up to 64 KiB ride in the database with their metadata, so a
# delivery costs one WAL commit, shared by concurrent deliveries.
set -eu

N=${N:-20000}
SESSIONS=${SESSIONS:-"1 20 100"}
LEN=${LEN:-2048}
TERN_PORT=${TERN_PORT:-22525}
PF_ADDR=${PF_ADDR:-127.0.0.1}
PF_PORT=${PF_PORT:-22526}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}

cd "$(dirname "$0")/../.."
WORK=$(mktemp -d /tmp/tern-bench-smtp.XXXXXX)
TERN_PID=
cleanup() {
	[ -n "$TERN_PID" ] && kill "$TERN_PID" 2>/dev/null || true
	[ -f "$WORK/pf/main.cf" ] && postfix -c "$WORK/pf" stop >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

for p in "$PF_PORT" "$TERN_PORT"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "port $p is in use (a previous run still going?)"; exit 1
	fi
done

echo "building tern and the helper..."
go build -o "$WORK/tern" ./cmd/tern
go build -o "$WORK/smtpbench" ./bench/smtp

# ---- Postfix: own instance on $PF_ADDR:$PF_PORT, Maildir via virtual(8).
setup_postfix() {
	pf=$WORK/pf
	mkdir -p "$pf" "$WORK/pfqueue" "$WORK/pfdata" "$WORK/pfmail"
	chown nobody:nogroup "$WORK/pfmail"
	chown postfix "$WORK/pfdata"
	chmod 755 "$WORK"
	cat >"$pf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $WORK/pfqueue
data_directory = $WORK/pfdata
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.example
mydestination =
relay_domains =
local_recipient_maps =
inet_interfaces = $PF_ADDR
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = example.org
virtual_mailbox_base = $WORK/pfmail
virtual_mailbox_maps = static:alice/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_mailbox_limit = 0
message_size_limit = 52428800
default_process_limit = 200
smtputf8_enable = no
biff = no
maillog_file = $WORK/pfdata/maillog
maillog_file_prefixes = $WORK
EOF
	# The distribution's services, chroot off, smtpd on our address only.
	awk -v addr="$PF_ADDR:$PF_PORT" '
		/^#/ || /^[ \t]/ || NF < 8 { print; next }
		$1 == "smtp" && $2 == "inet" { $1 = addr }
		{ $5 = "n"; print }' /etc/postfix/master.cf >"$pf/master.cf"
	# postfix(1) reports to syslog, and to stderr only on a terminal.
	if ! postfix -c "$pf" check || ! postfix -c "$pf" start >/dev/null 2>&1; then
		script -qc "postfix -c $pf check; postfix -c $pf start" /dev/null
		exit 1
	fi
	i=0
	until (exec 3<>"/dev/tcp/$PF_ADDR/$PF_PORT") 2>/dev/null; do
		i=$((i + 1)); [ $i -gt 100 ] && { echo "postfix did not start"; cat "$WORK/pfdata/maillog"; exit 1; }
		sleep 0.1
	done
}

# ---- tern: `tern serve` on a fresh data directory, high ports.
start_tern() {
	d=$WORK/tern-data
	rm -rf "$d"
	"$WORK/tern" init -data "$d" -domain example.org -hostname bench.example -listen 127.0.0.1 >/dev/null
	sed -i -e "s/:25\"/:$TERN_PORT\"/; s/:587\"/:$((TERN_PORT + 10))\"/; s/:465\"/:$((TERN_PORT + 11))\"/" \
		-e "s/:143\"/:$((TERN_PORT + 12))\"/; s/:993\"/:$((TERN_PORT + 13))\"/; s/:110\"/:$((TERN_PORT + 14))\"/" \
		-e "s/:995\"/:$((TERN_PORT + 15))\"/; s/^max_conns_per_ip = .*/max_conns_per_ip = 500/" "$d/tern.toml"
	echo "bench-password-1" | "$WORK/tern" user add -data "$d" alice@example.org >/dev/null
	"$WORK/tern" serve -data "$d" 2>"$WORK/tern.log" &
	TERN_PID=$!
	i=0
	until (exec 3<>"/dev/tcp/127.0.0.1/$TERN_PORT") 2>/dev/null; do
		i=$((i + 1)); [ $i -gt 100 ] && { echo "tern did not start"; cat "$WORK/tern.log"; exit 1; }
		sleep 0.1
	done
}

stop_tern() {
	RSS=$(awk '/VmHWM/ {print $2}' "/proc/$TERN_PID/status")
	kill "$TERN_PID"
	wait "$TERN_PID" 2>/dev/null || true
	TERN_PID=
}

now_ns() { date +%s%N; }

# run_source ADDR:PORT SESSIONS -> seconds (smtp-source aborts on any non-2xx)
run_source() {
	t0=$(now_ns)
	"$SMTP_SOURCE" -s "$2" -m "$N" -l "$LEN" -f bench@sender.example -t alice@example.org -M source.bench.example "$1"
	t1=$(now_ns)
	echo "$t0 $t1"
}

setup_postfix
printf "\nsmtp-source -s S -m %d -l %d, one connection per message\n" "$N" "$LEN"
printf "%-9s %14s %14s %8s %14s\n" sessions "tern msg/s" "postfix msg/s" ratio "tern peak RSS"
for s in $SESSIONS; do
	start_tern
	set -- $(run_source "127.0.0.1:$TERN_PORT" "$s")
	tern_secs=$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	stop_tern

	rm -rf "$WORK/pfmail/alice"
	t0=$(now_ns)
	"$SMTP_SOURCE" -s "$s" -m "$N" -l "$LEN" -f bench@sender.example -t alice@example.org -M source.bench.example "$PF_ADDR:$PF_PORT"
	pf_secs=$("$WORK/smtpbench" wait-maildir "$WORK/pfmail/alice" "$N" "$t0" 30m)

	awk -v n="$N" -v s="$s" -v t="$tern_secs" -v p="$pf_secs" -v rss="$RSS" 'BEGIN {
		tr = n / t; pr = n / p
		printf "%-9s %14.0f %14.0f %7.2fx %11.1f MiB\n", s, tr, pr, tr / pr, rss / 1024 }'
done
