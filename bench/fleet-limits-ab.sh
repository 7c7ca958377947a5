#!/usr/bin/env bash
# bench/fleet-limits-ab.sh — what counting the provider limits across a
# fleet (internal/fleet/limits.go: one round trip to PostgreSQL per Take)
# costs ONE node, as issue 19's note asks: smtp-source → mailtee →
# smtp-sink on loopback, with ledger_database = a private PostgreSQL this
# script starts (Debian's postgresql, as internal/testdb does: a temporary
# data directory, a loopback high port, its own socket directory, a
# password in a pgpass file that the URL names; fsync and
# synchronous_commit at their defaults, as a real one), alternating
#
#   A   fleet_shared_limits = no   (the pacer's own in-memory windows)
#   B   fleet_shared_limits = yes  (the windows counted in PostgreSQL)
#
# in rounds A B, B A, A B, ... so that the load of this shared machine
# falls on both alike. Both join the fleet (heartbeat) and have the same
# ledger_database: only the limits differ. The transport is
# provider-profiled (smtp_destination_profile = google) with limits that
# never bind: smtp_recipient_rate_limit = 100000/1m (the profile has no
# per-site window), concurrency 20, TLS off. Each message goes to its own
# mailbox (smtp-source -N), as a drain of many users does; -1 sends them
# all to one mailbox instead, and -S adds smtp_destination_rate_limit =
# 100000/1m, a window on the site (either: one hot key, every Take of the
# run on one advisory lock, and up to N rows counted by each).
#
# Usage: bench/fleet-limits-ab.sh [-b BIN] [-n MESSAGES] [-s SESSIONS]
#                                 [-r ROUNDS] [-t TIMEOUT_S] [-1] [-S]
#   -b  mailtee binary (default: built from this tree)
#   -n  messages per run (default 5000, 2 KB each)
#   -s  smtp-source sessions (default 20)
#   -r  rounds (default 4; each runs A and B)
#   -t  bound on each run, in seconds (default 300)
#   -1  one mailbox for every message (default: one each)
#   -S  a window on the site too
# Output: per run a RUN line (msg/s; ms of CPU per message of mailtee, its
# children included, and of PostgreSQL, all its processes); a table per
# round; per figure the per-round B/A ratios, their median and range:
#   RATIO msg/s B/A rounds=4 per_round=0.97,... median=0.96 min=.. max=..
# Needs root (PostgreSQL runs as the postgres user, smtp-sink as postfix).
set -euo pipefail

BIN=
MSGS=5000
SESS=20
ROUNDS=4
PT=300
ONE=0
SITE=
usage() {
	sed -n '/^# Usage:/,/^# Output:/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 1
}
while getopts "b:n:s:r:t:1Sh" opt; do
	case $opt in
	b) BIN=$OPTARG ;;
	n) MSGS=$OPTARG ;;
	s) SESS=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	t) PT=$OPTARG ;;
	1) ONE=1 ;;
	S) SITE="smtp_destination_rate_limit = 100000/1m" ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
for v in "$MSGS" "$SESS" "$ROUNDS" "$PT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "fleet-limits-ab.sh: not a positive integer: $v" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "fleet-limits-ab.sh: must run as root (PostgreSQL as postgres, smtp-sink as postfix)" >&2; exit 1; }
for c in smtp-source smtp-sink ss awk; do
	command -v "$c" >/dev/null || { echo "fleet-limits-ab.sh: $c not found (Debian's postfix package has smtp-source and smtp-sink)" >&2; exit 1; }
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -x $PGBIN/postgres ]] || { echo "fleet-limits-ab.sh: PostgreSQL not found (Debian's postgresql package)" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "fleet-limits-ab.sh: no postgres user (Debian's postgresql package)" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[fleet-limits-ab.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
OUT=$(mktemp -d /tmp/mailtee-fleet-ab.XXXXXX)
chmod 755 "$OUT"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	[[ -z ${PGPID:-} && -f $OUT/pg/data/postmaster.pid ]] && PGPID=$(head -n 1 "$OUT/pg/data/postmaster.pid")
	[[ -n ${PGPID:-} ]] && { kill -INT "$PGPID" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$PGPID" 2>/dev/null || break; sleep 0.1; done; }
	rm -rf "$OUT"
}
trap cleanup EXIT
die() { log "FAIL: $*"; exit 2; }

if [[ -z $BIN ]]; then
	log "building mailtee at $(cd "$REPO" && git log -1 --format='%h %s' | cut -c1-60)"
	(cd "$REPO" && go build -o "$OUT/mailtee" ./cmd/mailtee) || die "go build failed"
	BIN=$OUT/mailtee
fi

. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"
now() { date +%s.%N; }

# ----------------------------------------------------- PostgreSQL --
PG=$OUT/pg
mkdir -p "$PG"
chown postgres: "$PG"
chmod 700 "$PG"
free_port
PGPORT=$PORT
PGPASS=bench-$RANDOM$RANDOM
printf '%s\n' "$PGPASS" >"$PG/pw"
chown postgres: "$PG/pw"
runuser -u postgres -- env LC_ALL=C "$PGBIN/initdb" -D "$PG/data" -U postgres --pwfile "$PG/pw" \
	--auth-local=trust --auth-host=scram-sha-256 -E UTF8 >"$OUT/initdb.out" 2>&1 || die "initdb: $(tail -n 5 "$OUT/initdb.out")"
runuser -u postgres -- "$PGBIN/postgres" -D "$PG/data" -p "$PGPORT" -k "$PG" -c listen_addresses=127.0.0.1 \
	-c max_connections=100 -c logging_collector=off >"$OUT/pg.log" 2>&1 &
wait_listen "$PGPORT" 30 || die "PostgreSQL did not listen on $PGPORT: $(tail -n 5 "$OUT/pg.log")"
# The postmaster itself (runuser is its parent): what cleanup stops and
# whose processes pg_ticks counts.
PGPID=$(head -n 1 "$PG/data/postmaster.pid")
[[ $PGPID =~ ^[0-9]+$ ]] || die "no postmaster pid in $PG/data/postmaster.pid"
psql() { runuser -u postgres -- "$PGBIN/psql" -h "$PG" -p "$PGPORT" -U postgres -qAt "$@"; }
for _ in $(seq 50); do psql -c 'SELECT 1' postgres >/dev/null 2>&1 && break; sleep 0.1; done
psql -c 'CREATE DATABASE bench' postgres >/dev/null || die "CREATE DATABASE failed"
printf '127.0.0.1:%s:bench:postgres:%s\n' "$PGPORT" "$PGPASS" >"$OUT/pgpass"
chmod 600 "$OUT/pgpass"
URL="postgres://postgres@127.0.0.1:$PGPORT/bench?passfile=$OUT/pgpass&sslmode=disable"
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{ print $3 }') on 127.0.0.1:$PGPORT (pid $PGPID)"

# pg_ticks: CPU ticks of every PostgreSQL process so far: the
# postmaster's own and those of the children it reaped (exited
# backends), plus each live child's.
stat_ticks() { # stat_ticks PID [children]: utime+stime (+cutime+cstime)
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	s=${s##*) }
	# shellcheck disable=SC2086 # split the fields on purpose
	set -- $s ${2:-}
	if [[ ${!#} == children ]]; then echo $((${12} + ${13} + ${14} + ${15})); else echo $((${12} + ${13})); fi
}
pg_ticks() {
	local t c
	t=$(stat_ticks "$PGPID" children)
	for c in $(cat "/proc/$PGPID/task/$PGPID/children" 2>/dev/null); do
		t=$((t + $(stat_ticks "$c")))
	done
	echo "$t"
}
TCK=$(getconf CLK_TCK)

# ----------------------------------------------------------- a run --
# run NAME SHARED: one mailtee instance, fleet_shared_limits = SHARED,
# MSGS messages through it to a fresh smtp-sink. Prints a RUN line.
run() {
	local name=$1 shared=$2 d=$OUT/$1 port sink sinkport start end mt pg0 pg1 n pid rc=0 rcpt=rcpt@sink.example nflag=-N
	mkdir -p "$d/queue" "$d/data"
	chmod 755 "$d"
	free_port
	sinkport=$PORT
	smtp-sink -c -u postfix "127.0.0.1:$sinkport" 256 >"$d/sink" 2>"$d/sink.err" &
	sink=$!
	PIDS+=("$sink")
	wait_listen "$sinkport" 10 || die "smtp-sink did not listen: $(cat "$d/sink.err")"
	free_port
	port=$PORT
	cat >"$d/main.cf" <<EOF
# bench/fleet-limits-ab.sh, run $name
compatibility_level = 3.6
myhostname = bench-node.example
myorigin = bench.example
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
mydestination =
local_recipient_maps =
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtpd_port = $port
queue_directory = $d/queue
data_directory = $d/data
maillog_file = $d/maillog
transport_maps = inline:{ sink.example=smtp:[127.0.0.1]:$sinkport }
smtp_destination_profile = google
smtp_destination_concurrency_limit = 20
smtp_destination_recipient_limit = 50
smtp_recipient_rate_limit = 100000/1m
$SITE
ledger_database = $URL
fleet_shared_limits = $shared
EOF
	"$BIN" check -c "$d" >"$d/check.out" 2>&1 || die "mailtee check ($name): $(cat "$d/check.out")"
	"$BIN" serve -c "$d" >"$d/serve.out" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_listen "$port" 20 || die "mailtee $name did not listen on $port: $(tail -n 10 "$d/serve.out")"
	pg0=$(pg_ticks)
	((ONE)) && nflag=
	start=$(now)
	# shellcheck disable=SC2086 # nflag: -N or nothing
	timeout "$PT" smtp-source -s "$SESS" -m "$MSGS" -l 2048 $nflag -f sender@bench.example -t "$rcpt" \
		"127.0.0.1:$port" >"$d/source" 2>&1 || die "$name: smtp-source failed: $(tail -n 5 "$d/source")"
	local deadline=$((SECONDS + PT))
	while :; do
		n=$(tail -c 120 "$d/sink" 2>/dev/null | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2) || true
		n=${n:-0}
		((n <= MSGS)) || die "$name: the sink counted $n, more than the $MSGS sent"
		if ((n == MSGS)) && timeout 60 "$BIN" queue -c "$d" list 2>/dev/null | grep -q '^Mail queue is empty'; then
			break
		fi
		((SECONDS < deadline)) || die "$name: $n of $MSGS delivered after ${PT}s: $(grep -c status=deferred "$d/maillog" || true) deferrals; $(grep -m 3 -i 'warning\|error' "$d/maillog" || true)"
		kill -0 "$pid" 2>/dev/null || die "$name: mailtee exited: $(tail -n 10 "$d/serve.out")"
		sleep 0.05
	done
	end=$(now)
	mt=$(stat_ticks "$pid" children)
	pg1=$(pg_ticks)
	kill -TERM "$pid"
	wait "$pid" || rc=$?
	((rc == 0)) || log "warning: mailtee $name exited with $rc: $(tail -n 3 "$d/serve.out")"
	kill -TERM "$sink" 2>/dev/null || true
	wait "$sink" 2>/dev/null || true
	local rows fb
	rows=$(psql -c "SELECT COUNT(*) FROM fleet_limit_attempts" bench 2>/dev/null || echo -)
	fb=$(grep -c 'shared limits: database unreachable' "$d/maillog" || true)
	awk -v n="$name" -v s="$shared" -v m="$MSGS" -v a="$start" -v b="$end" -v mt="$mt" -v pg=$((pg1 - pg0)) -v tck="$TCK" -v rows="$rows" -v fb="$fb" 'BEGIN {
		printf "RUN %s shared=%s msgs=%d elapsed=%.2f msg_s=%.1f mailtee_ms_msg=%.3f pg_ms_msg=%.3f limit_rows=%s fallbacks=%d\n",
			n, s, m, b - a, m / (b - a), 1000 * mt / tck / m, 1000 * pg / tck / m, rows, fb }'
}

log "$ROUNDS rounds of A (fleet_shared_limits = no) and B (yes), $MSGS messages each, $SESS sessions, $( ((ONE)) && echo 'one mailbox' || echo 'one mailbox per message')${SITE:+, $SITE}"
for i in $(seq "$ROUNDS"); do
	if ((i % 2)); then order="A B"; else order="B A"; fi
	for c in $order; do
		if [[ $c == A ]]; then sh=no; else sh=yes; fi
		log "round $i: $c (load $(cut -d' ' -f1 /proc/loadavg))"
		run "$c$i" "$sh" | tee -a "$OUT/runs"
	done
done

field() { # field RUN KEY
	grep "^RUN $1 " "$OUT/runs" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2
}
echo
echo "fleet shared limits A/B, one node, $MSGS messages per run, $SESS sessions, $(nproc) CPUs, $ROUNDS rounds, $(date -u +%FT%TZ)"
printf '%-5s %9s %9s %11s %11s %9s %9s\n' round A_msg/s B_msg/s A_mt_ms/msg B_mt_ms/msg A_pg_ms B_pg_ms
for i in $(seq "$ROUNDS"); do
	printf '%-5s %9s %9s %11s %11s %9s %9s\n' "$i" "$(field "A$i" msg_s)" "$(field "B$i" msg_s)" \
		"$(field "A$i" mailtee_ms_msg)" "$(field "B$i" mailtee_ms_msg)" "$(field "A$i" pg_ms_msg)" "$(field "B$i" pg_ms_msg)"
done
echo
ratio() { # ratio LABEL KEY: B/A per round, median, range
	local r v=()
	for r in $(seq "$ROUNDS"); do
		v+=("$(awk -v a="$(field "A$r" "$2")" -v b="$(field "B$r" "$2")" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "-" }')")
	done
	printf '%s\n' "${v[@]}" | grep -E '^[0-9.]+$' | sort -g | awk -v l="$1" -v per="$(IFS=,; echo "${v[*]}")" '{ x[NR] = $1 } END {
		if (NR == 0) { print "RATIO " l " no complete round"; exit }
		m = NR % 2 ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2
		printf "RATIO %s B/A rounds=%d per_round=%s median=%.3f min=%.3f max=%.3f\n", l, NR, per, m, x[1], x[NR] }'
}
ratio msg/s msg_s
ratio mailtee_cpu/msg mailtee_ms_msg
# PostgreSQL's CPU per message under A is the heartbeat's and the
# ledger's only: the B-A difference is what the limits cost it.
for r in $(seq "$ROUNDS"); do
	awk -v r="$r" -v a="$(field "A$r" pg_ms_msg)" -v b="$(field "B$r" pg_ms_msg)" 'BEGIN { printf "PG round %d: %.3f ms/msg with the shared limits, %.3f without (+%.3f)\n", r, b, a, b - a }'
done
