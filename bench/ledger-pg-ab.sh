#!/usr/bin/env bash
# bench/ledger-pg-ab.sh — what the delivery ledger costs in CPU per
# message in PostgreSQL (ledger_database = postgres://..., a fleet's
# ledger) against SQLite (the default, ledger.db), and against no
# ledger: bench/compare.sh runs of mailtee alone, with
# bench/cpu-wrap.sh standing for the binary, alternated sqlite, pg, off,
# sqlite, pg, off, ... so that the load of this shared machine falls on
# all alike. PostgreSQL is a private server started here (Debian's
# postgresql package: initdb in a temporary directory, loopback, a high
# port, fsync on as in production), its CPU (postmaster and backends)
# measured for each pg run and counted with mailtee's.
#
# Usage: bench/ledger-pg-ab.sh [-n MESSAGES] [-s SESSIONS] [-r ROUNDS]
#                              [-o SCENARIOS] [-t PHASE_TIMEOUT_S]
#   -n  messages per run (default 10000)
#   -s  smtp-source sessions (default 20)
#   -r  rounds of (sqlite, pg, off) (default 3)
#   -o  compare.sh scenarios (default relay,seed)
#   -t  compare.sh's bound on each wait (default 600)
# Environment: MAILTEE_BIN the mailtee binary (unset: built here).
#
# Output: a table of ms of CPU per message for each round (mailtee's,
# and for pg the server's beside it), then per scenario:
#   PGAB relay sqlite=0.210 pg=0.230 pg_server=0.150 off=0.160 ledger_sqlite=0.050 ledger_pg=0.220 ratio=4.40
# where ledger_X is X's run less the run without a ledger (the medians
# of the rounds; for pg, mailtee's and the server's CPU), and ratio is
# ledger_pg / ledger_sqlite. Messages per run: relay, the relay
# instance's status=sent; seed, half the primary's (Maildir and copy).
# Needs root, as compare.sh.
set -euo pipefail

MSGS=10000
SESS=20
ROUNDS=3
SCEN=relay,seed
PT=600
usage() {
	sed -n '/^# Usage:/,/^# Environment:/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 1
}
while getopts "n:s:r:o:t:h" opt; do
	case $opt in
	n) MSGS=$OPTARG ;;
	s) SESS=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	o) SCEN=$OPTARG ;;
	t) PT=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
for v in "$MSGS" "$SESS" "$ROUNDS" "$PT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "ledger-pg-ab.sh: not a positive integer: $v" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "ledger-pg-ab.sh: must run as root (as compare.sh)" >&2; exit 1; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -x $PGBIN/postgres ]] || { echo "ledger-pg-ab.sh: PostgreSQL's programs are not installed (Debian's postgresql package)" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[ledger-pg-ab.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
OUT=$(mktemp -d /tmp/mailtee-ledger-pg-ab.XXXXXX)
PGDIR=$(mktemp -d /tmp/mailtee-ledger-pg-db.XXXXXX)
PGPID=
cleanup() {
	if [[ -n $PGPID ]]; then
		kill -INT "$PGPID" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$PGPID" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -rf "$OUT" "$PGDIR"
}
trap cleanup EXIT

if [[ -z ${MAILTEE_BIN:-} ]]; then
	log "building mailtee at $(cd "$REPO" && git log -1 --format='%h %s' | cut -c1-60)"
	(cd "$REPO" && go build -o "$OUT/mailtee" ./cmd/mailtee) || { log "go build failed"; exit 2; }
	MAILTEE_BIN=$OUT/mailtee
fi
export MTCPU_BIN=$MAILTEE_BIN MTCPU_LOG=$OUT/cpu.log
log "mailtee: $MAILTEE_BIN"

# The private PostgreSQL: the postgres account owns its directory.
chmod 755 "$PGDIR"
chown postgres: "$PGDIR"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo bench-secret >"$PGDIR/pw"
chown postgres: "$PGDIR/pw"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --pwfile "$PGDIR/pw" \
	--auth-local=trust --auth-host=scram-sha-256 -E UTF8 >"$OUT/initdb.log" 2>&1 || { cat "$OUT/initdb.log" >&2; exit 2; }
runuser -u postgres -- "$PGBIN/postgres" -D "$PGDIR/data" -p "$PORT" -k "$PGDIR" \
	-c listen_addresses=127.0.0.1 -c max_connections=100 >"$OUT/postgres.log" 2>&1 &
PGPID=$!
for _ in $(seq 300); do
	"$PGBIN/pg_isready" -q -h "$PGDIR" -p "$PORT" && break
	sleep 0.1
done
psql() { runuser -u postgres -- "$PGBIN/psql" -q -h "$PGDIR" -p "$PORT" -U postgres "$@"; }
psql -d postgres -c 'CREATE DATABASE ledger' >/dev/null
install -m 600 /dev/null "$OUT/pgpass"
echo "127.0.0.1:$PORT:*:postgres:bench-secret" >"$OUT/pgpass"
URL="postgres://postgres@127.0.0.1:$PORT/ledger?sslmode=disable&passfile=$OUT/pgpass"
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (pid $PGPID)"

# server_ticks: the CPU ticks of the server so far (postmaster, the
# backends it reaped, those alive).
server_ticks() {
	local pm t=0 f
	pm=$(head -n 1 "$PGDIR/data/postmaster.pid")
	for f in /proc/[0-9]*/stat; do
		local s
		s=$(cat "$f" 2>/dev/null) || continue
		local pid=${f#/proc/}
		pid=${pid%/stat}
		s=${s##*) }
		# shellcheck disable=SC2086 # split the fields on purpose
		set -- $s
		if [[ $pid == "$pm" ]]; then
			t=$((t + ${12} + ${13} + ${14} + ${15}))
		elif [[ $2 == "$pm" ]]; then
			t=$((t + ${12} + ${13}))
		fi
	done
	echo "$t"
}

# run NAME EXTRA_CF: one compare.sh run of mailtee; the server's ticks
# for it in $OUT/NAME.db.
run() {
	local name=$1 extra=$2 rc=0 t0 t1
	log "run $name"
	[[ $name == pg* ]] && psql -d ledger -c 'DROP TABLE IF EXISTS messages, deliveries, gaps, ledger_meta, fleet_nodes' >/dev/null 2>&1
	t0=$(server_ticks)
	echo "run $name" >>"$MTCPU_LOG"
	MT_ONLY=1 MAILTEE_BIN="$REPO/bench/cpu-wrap.sh" MAILTEE_EXTRA_CF="$extra" \
		bash "$REPO/bench/compare.sh" -o "$SCEN" -n "$MSGS" -s "$SESS" -t "$PT" >"$OUT/$name.out" 2>"$OUT/$name.err" || rc=$?
	t1=$(server_ticks)
	echo $((t1 - t0)) >"$OUT/$name.db"
	((rc == 0)) || log "run $name: compare.sh exited with $rc: $(grep -h 'FAIL' "$OUT/$name.err" | head -n 3)"
	# The pg runs' ledger is the database's: its messages, as a check.
	[[ $name == pg* ]] && log "run $name: $(psql -d ledger -tAc 'SELECT COUNT(*) FROM messages') messages in the PostgreSQL ledger"
	grep '^RESULT' "$OUT/$name.out" || true
	grep -h '    ledger:' "$OUT/$name.out" | sort | uniq -c | sed 's/^/    /' || true
}

for i in $(seq "$ROUNDS"); do
	run "sqlite$i" ""
	run "pg$i" "ledger_database = $URL"
	run "off$i" "ledger_database ="
done

# The table: ms of CPU per message of each run and scenario (mailtee's,
# from cpu-wrap.sh's lines after each "run NAME"); the server's ticks
# are split over a run's scenarios by their share of mailtee's.
tck=$(getconf CLK_TCK)
IFS=, read -ra scens <<<"$SCEN"
echo
echo "ledger sqlite/pg/off, mailtee alone, $MSGS messages per run, $SESS sessions, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
awk -v tck="$tck" -v out="$OUT" -v scens="$SCEN" '
$1 == "run" { run = $2; next }
$1 != "cpu" { next }
{
	inst = $3; t = $4 + $5; sent = $6; sub("sent=", "", sent)
	scen = inst == "relay-mt" ? "relay" : "seed"
	ticks[run, scen] += t
	if (inst == "relay-mt") msgs[run, scen] = sent
	if (inst == "seed-mt-primary") msgs[run, scen] = sent / 2
	runs[run] = 1
}
END {
	ns = split(scens, sc, ",")
	for (r in runs) {
		f = out "/" r ".db"; db = 0
		if ((getline db < f) > 0) close(f)
		tot = 0
		for (i = 1; i <= ns; i++) tot += ticks[r, sc[i]]
		for (i = 1; i <= ns; i++) {
			s = sc[i]
			m = msgs[r, s] > 0 ? 1000 / tck / msgs[r, s] : -1
			srv = tot > 0 ? db * ticks[r, s] / tot : 0
			printf "ROW %s %s %.4f %.4f\n", r, s, m < 0 ? -1 : ticks[r, s] * m, m < 0 ? -1 : srv * m
		}
	}
}' "$MTCPU_LOG" | sort -k2,2V -k3 >"$OUT/rows"
printf '%-9s %-6s %12s %14s\n' run scen "mailtee ms" "server ms"
awk '{ printf "%-9s %-6s %12.4f %14.4f\n", $2, $3, $4, $5 }' "$OUT/rows"
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for s in "${scens[@]}"; do
	sq=$(awk -v s="$s" '$3 == s && $2 ~ /^sqlite/ && $4 >= 0 { print $4 }' "$OUT/rows" | median)
	pg=$(awk -v s="$s" '$3 == s && $2 ~ /^pg/ && $4 >= 0 { print $4 }' "$OUT/rows" | median)
	pgs=$(awk -v s="$s" '$3 == s && $2 ~ /^pg/ && $4 >= 0 { print $5 }' "$OUT/rows" | median)
	pga=$(awk -v s="$s" '$3 == s && $2 ~ /^pg/ && $4 >= 0 { print $4 + $5 }' "$OUT/rows" | median)
	off=$(awk -v s="$s" '$3 == s && $2 ~ /^off/ && $4 >= 0 { print $4 }' "$OUT/rows" | median)
	awk -v s="$s" -v sq="$sq" -v pg="$pg" -v pgs="$pgs" -v pga="$pga" -v off="$off" 'BEGIN {
		lsq = sq - off; lpg = pga - off
		printf "PGAB %s sqlite=%.4f pg=%.4f pg_server=%.4f off=%.4f ledger_sqlite=%.4f ledger_pg=%.4f ratio=%s pg_all/sqlite=%.2f\n",
			s, sq, pg, pgs, off, lsq, lpg, (lsq > 0 ? sprintf("%.2f", lpg / lsq) : "-"), (sq > 0 ? pga / sq : 0) }'
done
if grep -q . <(cat "$OUT"/*.err 2>/dev/null | grep FAIL); then
	log "some runs failed"
	exit 2
fi
