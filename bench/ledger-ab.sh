#!/usr/bin/env bash
# bench/ledger-ab.sh — what the delivery ledger costs mailtee, measured
# with bench/compare.sh: mailtee with its ledger on (the default,
# ledger_database = ledger.db under the instance's own data_directory)
# and off (ledger_database empty, through MAILTEE_EXTRA_CF), alternated
# on, off, on, off, ... in one run, so that the load of this shared
# machine falls on both alike. Postfix (and the loopback ceiling) runs
# once, first, for reference.
#
# Usage: bench/ledger-ab.sh [-n MESSAGES] [-s SESSIONS] [-r ROUNDS]
#                           [-o SCENARIOS] [-t PHASE_TIMEOUT_S] [-P]
#   -n  messages per run (default 30000: a relay run lasts 10-20 s at
#       1500-3000 msg/s, a seed run 30-60 s; shorter runs are mostly
#       noise on a shared machine)
#   -s  smtp-source sessions (default 20)
#   -r  rounds of (on, off) (default 3)
#   -o  compare.sh scenarios (default relay,seed)
#   -t  compare.sh's bound on each wait (default 600)
#   -P  no Postfix reference run
# Environment: MAILTEE_BIN as for compare.sh (unset: built once here).
#
# Output: each run's RESULT lines, then a table (run, ledger, msg/s and
# DATA->250 p50/p99 per scenario), the medians of each side and their
# ratio (on / off: 1.00 means the ledger costs nothing), and a line per
# scenario:  AB relay on=1480 off=1510 ratio=0.98 runs=3
# Needs root, as compare.sh.
set -euo pipefail

MSGS=30000
SESS=20
ROUNDS=3
SCEN=relay,seed
PT=600
PF=1
usage() {
	sed -n '/^# Usage:/,/^# Environment:/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 1
}
while getopts "n:s:r:o:t:Ph" opt; do
	case $opt in
	n) MSGS=$OPTARG ;;
	s) SESS=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	o) SCEN=$OPTARG ;;
	t) PT=$OPTARG ;;
	P) PF=0 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
for v in "$MSGS" "$SESS" "$ROUNDS" "$PT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "ledger-ab.sh: not a positive integer: $v" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "ledger-ab.sh: must run as root (as compare.sh)" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[ledger-ab.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
OUT=$(mktemp -d /tmp/mailtee-ledger-ab.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

if [[ -z ${MAILTEE_BIN:-} ]]; then
	log "building mailtee at $(cd "$REPO" && git log -1 --format='%h %s' | cut -c1-60)"
	(cd "$REPO" && go build -o "$OUT/mailtee" ./cmd/mailtee) || { log "go build failed"; exit 2; }
	MAILTEE_BIN=$OUT/mailtee
fi
export MAILTEE_BIN
log "mailtee: $MAILTEE_BIN (modified $(date -r "$MAILTEE_BIN" '+%F %T %Z'))"

# run NAME ENV...: one compare.sh run; its output in $OUT/NAME.out.
run() {
	local name=$1 rc=0
	shift
	log "run $name: $*"
	env "$@" bash "$REPO/bench/compare.sh" -o "$SCEN" -n "$MSGS" -s "$SESS" -t "$PT" >"$OUT/$name.out" 2>"$OUT/$name.err" || rc=$?
	((rc == 0)) || log "run $name: compare.sh exited with $rc: $(grep -h 'FAIL' "$OUT/$name.err" | head -n 3)"
	grep '^RESULT' "$OUT/$name.out" || true
	grep -h '    ledger:' "$OUT/$name.out" | sort | uniq -c | sed 's/^/    /' || true
}

if ((PF == 1)); then
	run postfix PF_ONLY=1
fi
RUNS=()
for i in $(seq "$ROUNDS"); do
	run "on$i" MT_ONLY=1 MAILTEE_EXTRA_CF=
	RUNS+=("on$i")
	run "off$i" MT_ONLY=1 "MAILTEE_EXTRA_CF=ledger_database ="
	RUNS+=("off$i")
done

# field RUN SCENARIO KEY: KEY=value of the RESULT line, or "-".
field() {
	local v
	v=$(grep "^RESULT $2 " "$OUT/$1.out" 2>/dev/null | grep -o " $3=[^ ]*" | cut -d= -f2) || true
	echo "${v:--}"
}
median() { # median VALUES...: of the numeric ones, or "-"
	printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "-"; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

IFS=, read -ra scens <<<"$SCEN"
echo
echo "ledger on/off, mailtee, $MSGS messages per run, $SESS sessions, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
if ((PF == 1)); then
	for s in "${scens[@]}"; do
		echo "reference $s: Postfix $(field postfix "$s" postfix) msg/s$([[ $s == relay ]] && echo ", ceiling $(field postfix relay ceiling) msg/s")"
	done
fi
printf '%-6s %-6s' run ledger
for s in "${scens[@]}"; do printf ' %12s %14s' "$s msg/s" "p50/p99 ms"; done
echo
for r in "${RUNS[@]}"; do
	printf '%-6s %-6s' "${r//[a-z]/}" "${r//[0-9]/}"
	for s in "${scens[@]}"; do
		printf ' %12s %14s' "$(field "$r" "$s" mailtee)" "$(field "$r" "$s" mailtee_p50_ms)/$(field "$r" "$s" mailtee_p99_ms)"
	done
	echo
done
for s in "${scens[@]}"; do
	on=() off=()
	for r in "${RUNS[@]}"; do
		if [[ $r == on* ]]; then on+=("$(field "$r" "$s" mailtee)"); else off+=("$(field "$r" "$s" mailtee)"); fi
	done
	mon=$(median "${on[@]}")
	moff=$(median "${off[@]}")
	ratio=-
	[[ $mon != - && $moff != - ]] && ratio=$(awk -v a="$mon" -v b="$moff" 'BEGIN { printf "%.2f", a / b }')
	# the spread: (max - min) / median of each side
	spread() {
		printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk -v m="$1" '{ v[NR] = $1 } END { if (NR > 1) { s = 0; for (i = 1; i <= NR; i++) s += v[i]; printf "%.0f%%", 100 * (v[NR] - v[1]) / (s / NR) } else print "-" }'
	}
	echo "AB $s on=$mon off=$moff ratio=$ratio runs=$ROUNDS spread_on=$(spread "${on[@]}") spread_off=$(spread "${off[@]}")"
done
if grep -q . <(cat "$OUT"/*.err 2>/dev/null | grep FAIL); then
	log "some runs failed; their figures show as '-'"
	exit 2
fi
