#!/usr/bin/env bash
# bench/cpu-wrap.sh — stands for the mailtee binary (MAILTEE_BIN) in
# bench/compare.sh runs, to measure the CPU time that mailtee serve
# spends, which a loaded shared machine disturbs less than the elapsed
# time. Every command but serve is run as is. For serve, mailtee runs as
# this script's child; SIGTERM and SIGINT are passed on; once it has
# exited, one line is appended to $MTCPU_LOG:
#   cpu BIN INSTANCE user_ticks sys_ticks sent=N extra=MAILTEE_EXTRA_CF onebox=SEED_ONEBOX
# (the ticks, of the clock of `getconf CLK_TCK`, are mailtee's and those of
# the children it reaped, its local delivery helpers; sent= counts the
# status=sent lines of the instance's maillog). compare.sh's peak memory
# figures are then this script's, not mailtee's: ignore them.
# Environment: MTCPU_BIN the real mailtee binary, MTCPU_LOG the log file.
set -u
[[ -n ${MTCPU_BIN:-} && -n ${MTCPU_LOG:-} ]] || { echo "cpu-wrap.sh: set MTCPU_BIN and MTCPU_LOG" >&2; exit 2; }
[[ ${1:-} == serve ]] || exec "$MTCPU_BIN" "$@"
dir=
prev=
for a in "$@"; do
	[[ $prev == -c ]] && dir=$a
	prev=$a
done
"$MTCPU_BIN" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
rc=0
while kill -0 "$child" 2>/dev/null; do
	wait "$child"
	rc=$?
done
# fields 16 and 17 of /proc/self/stat: cutime and cstime, the CPU of the
# children waited for (mailtee, and what it waited for).
s=$(cat /proc/$$/stat)
s=${s##*) }
# shellcheck disable=SC2086 # split the fields on purpose
set -- $s
sent=$(grep -c 'status=sent' "$dir/maillog" 2>/dev/null || true)
echo "cpu $MTCPU_BIN $(basename "$dir") ${14} ${15} sent=${sent:-0} extra=${MAILTEE_EXTRA_CF:-} onebox=${SEED_ONEBOX:-0}" >>"$MTCPU_LOG"
exit "$rc"
