#!/usr/bin/env bash
# bench/migration-ab.sh — what issue 18 (migration phases, copy_transport,
# SRS for copies, settings recorded per message) costs mailtee, measured
# with bench/compare.sh (this tree's) as ledger-ab.sh does: four
# configurations alternated in one run, so that the load of this shared
# machine falls on all alike:
#
#   A     mailtee built from the commit before issue 18 (-a BIN): relay, seed
#   B     mailtee built from this tree, or -b BIN: relay, seed
#   Bmap  B, seed only, with dual_delivery_phase_maps = hash:FILE, a table
#         of 1000 entries (the phase is looked up for every copy; the
#         benchmark's mailbox has an entry, "dual")
#   Bone  B, seed only, in one box: no relay; copy_transport =
#         smtp:[127.0.0.1]:SINKPORT sends the copies straight to the sink
#         (compare.sh's SEED_ONEBOX=1)
#
# Rounds run A B Bmap Bone, then Bone Bmap B A, and so on, so that no
# configuration always follows another. No Postfix run (-P of ledger-ab).
#
# Usage: bench/migration-ab.sh -a BIN_A [-b BIN_B] [-n MESSAGES] [-s SESSIONS]
#                              [-r ROUNDS] [-t PHASE_TIMEOUT_S] [-T TOTAL_S]
#   -a  mailtee binary of the old build (required)
#   -b  mailtee binary of the new build (default: built from this tree)
#   -n  messages per run (default 20000)
#   -s  smtp-source sessions (default 20)
#   -r  rounds (default 4)
#   -t  compare.sh's bound on each wait (default 300)
#   -T  no new round starts after TOTAL_S seconds (default 2400)
# Output: per run the RESULT lines; a table of msg/s per round; per pair
# (B/A relay, B/A seed, Bmap/B seed, Bone/B seed) the ratio within each
# round, the median and range of those, and the ratio of the medians:
#   RATIO seed B/A rounds=4 per_round=0.98,1.01,... median=0.99 min=.. max=..
# Needs root, as compare.sh.
set -euo pipefail

BIN_A= BIN_B=
MSGS=20000
SESS=20
ROUNDS=4
PT=300
TOTAL=2400
usage() {
	sed -n '/^# Usage:/,/^# Output:/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 1
}
while getopts "a:b:n:s:r:t:T:h" opt; do
	case $opt in
	a) BIN_A=$OPTARG ;;
	b) BIN_B=$OPTARG ;;
	n) MSGS=$OPTARG ;;
	s) SESS=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	t) PT=$OPTARG ;;
	T) TOTAL=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 && -n $BIN_A ]] || usage
for v in "$MSGS" "$SESS" "$ROUNDS" "$PT" "$TOTAL"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "migration-ab.sh: not a positive integer: $v" >&2; exit 1; }
done
[[ -x $BIN_A ]] || { echo "migration-ab.sh: -a $BIN_A is not an executable file" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "migration-ab.sh: must run as root (as compare.sh)" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[migration-ab.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
OUT=$(mktemp -d /tmp/mailtee-migration-ab.XXXXXX)
chmod 755 "$OUT"
trap 'rm -rf "$OUT"' EXIT

if [[ -z $BIN_B ]]; then
	log "building mailtee at $(cd "$REPO" && git log -1 --format='%h %s' | cut -c1-60)"
	(cd "$REPO" && go build -o "$OUT/mailtee" ./cmd/mailtee) || { log "go build failed"; exit 2; }
	BIN_B=$OUT/mailtee
fi
log "A: $BIN_A; B: $BIN_B"

# The phase table: 999 other users (dual, forward, off) and the benchmark's
# mailbox (dual: the flow is the same as without the table).
PHASE=$OUT/dual_delivery_phase
for i in $(seq 0 998); do
	v=dual
	((i % 10 == 3)) && v=forward
	((i % 10 == 7)) && v=off
	printf 'user%04d@bench.example\t%s\n' "$i" "$v"
done >"$PHASE"
printf 'mtbench@bench.example\tdual\n' >>"$PHASE"

# run NAME SCENARIOS ENV...: one compare.sh run (mailtee only).
run() {
	local name=$1 scen=$2 rc=0
	shift 2
	log "run $name ($scen, load $(cut -d' ' -f1 /proc/loadavg)): $*"
	echo "$(cut -d' ' -f1 /proc/loadavg)" >"$OUT/$name.load"
	env MT_ONLY=1 "$@" bash "$REPO/bench/compare.sh" -o "$scen" -n "$MSGS" -s "$SESS" -t "$PT" >"$OUT/$name.out" 2>"$OUT/$name.err" || rc=$?
	((rc == 0)) || log "run $name: compare.sh exited with $rc: $(grep -h 'FAIL' "$OUT/$name.err" | head -n 3)"
	grep '^RESULT' "$OUT/$name.out" | sed "s/^/$name /" || true
}
runcfg() { # runcfg CONFIG ROUND
	case $1 in
	A) run "A$2" relay,seed MAILTEE_BIN="$BIN_A" MAILTEE_EXTRA_CF= ;;
	B) run "B$2" relay,seed MAILTEE_BIN="$BIN_B" MAILTEE_EXTRA_CF= ;;
	Bmap) run "Bmap$2" seed MAILTEE_BIN="$BIN_B" "MAILTEE_EXTRA_CF=dual_delivery_phase_maps = hash:$PHASE" ;;
	Bone) run "Bone$2" seed MAILTEE_BIN="$BIN_B" MAILTEE_EXTRA_CF= SEED_ONEBOX=1 ;;
	esac
}

DONE=0
for i in $(seq "$ROUNDS"); do
	if ((SECONDS > TOTAL)); then
		log "stopping after $DONE rounds: ${TOTAL}s have passed"
		break
	fi
	if ((i % 2)); then order="A B Bmap Bone"; else order="Bone Bmap B A"; fi
	for c in $order; do runcfg "$c" "$i"; done
	DONE=$i
done

# field RUN SCENARIO: mailtee's msg/s in the RESULT line, or "-".
field() {
	local v
	v=$(grep "^RESULT $2 " "$OUT/$1.out" 2>/dev/null | grep -o " mailtee=[^ ]*" | cut -d= -f2) || true
	echo "${v:--}"
}
echo
echo "issue 18 A/B, mailtee only, $MSGS messages per run, $SESS sessions, $(nproc) CPUs, $DONE rounds, $(date -u +%FT%TZ)"
printf '%-5s %8s %8s %8s %8s %8s %8s  %s\n' round A_relay B_relay A_seed B_seed Bmap_seed Bone_seed "load at start A/B/Bmap/Bone"
for i in $(seq "$DONE"); do
	printf '%-5s %8s %8s %8s %8s %8s %8s  %s\n' "$i" "$(field "A$i" relay)" "$(field "B$i" relay)" "$(field "A$i" seed)" \
		"$(field "B$i" seed)" "$(field "Bmap$i" seed)" "$(field "Bone$i" seed)" \
		"$(cat "$OUT/A$i.load")/$(cat "$OUT/B$i.load")/$(cat "$OUT/Bmap$i.load")/$(cat "$OUT/Bone$i.load")"
done
median() { # median VALUES...: of the numeric ones, or "-"
	printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "-"; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# pair LABEL SCENARIO NUM DEN: per-round ratios NUM/DEN (rounds where
# both ran), their median and range, the medians of each side and the
# ratio of those.
pair() {
	local r n d num=() den=() rat=() mr mn md lo hi
	for r in $(seq "$DONE"); do
		n=$(field "$3$r" "$2")
		d=$(field "$4$r" "$2")
		num+=("$n")
		den+=("$d")
		if [[ $n =~ ^[0-9.]+$ && $d =~ ^[0-9.]+$ ]]; then rat+=("$(awk -v a="$n" -v b="$d" 'BEGIN { printf "%.3f", a / b }')"); fi
	done
	if ((${#rat[@]} == 0)); then
		echo "RATIO $1 no complete round"
		return
	fi
	mr=$(median "${rat[@]}")
	mn=$(median "${num[@]}")
	md=$(median "${den[@]}")
	lo=$(printf '%s\n' "${rat[@]}" | sort -g | head -n 1)
	hi=$(printf '%s\n' "${rat[@]}" | sort -g | tail -n 1)
	echo "RATIO $1 rounds=${#rat[@]} per_round=$(IFS=,; echo "${rat[*]}") median=$mr min=$lo max=$hi medians=$mn/$md ratio_of_medians=$(awk -v a="$mn" -v b="$md" 'BEGIN { if (a ~ /^[0-9.]+$/ && b > 0) printf "%.3f", a / b; else print "-" }')"
}
echo
pair "relay B/A" relay B A
pair "seed B/A" seed B A
pair "seed Bmap/B" seed Bmap B
pair "seed Bone/B" seed Bone B
if grep -q . <(cat "$OUT"/*.err 2>/dev/null | grep FAIL); then
	log "some runs failed; their figures show as '-'"
	cat "$OUT"/*.err | grep FAIL | head -n 10 >&2
	exit 2
fi
