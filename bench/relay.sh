#!/usr/bin/env bash
# bench/relay.sh — relay throughput, mailtee against Postfix, same run.
#
#   smtp-source → MTA → smtp-sink   (default 20 sessions, 5000 messages of 2 KB)
#
# Three phases on loopback:
#   ceiling   smtp-source straight into smtp-sink (no MTA)
#   postfix   a private Postfix instance (postfix -c DIR) on a high port
#   mailtee   `mailtee serve -c DIR`, built from this repository
# Both MTAs get the same main.cf settings: accept from 127.0.0.0/8, no local
# domains, route sink.example through transport_maps to the sink, no TLS,
# log to a file. Elapsed time runs from the start of smtp-source until the
# sink has counted every message AND the MTA's queue is empty (delivered,
# not just accepted).
#
# Usage: bench/relay.sh [-n MESSAGES] [-s SESSIONS] [-t TIMEOUT_S] [-k]
#   -n  messages (default 5000)      -s  parallel smtp-source sessions (default 20)
#   -t  bound on each phase's wait, seconds (default 240)
#   -k  keep the temporary directory (configs, logs) for inspection
#
# Needs root (Postfix's private instance, smtp-sink -u postfix). Installs
# Debian's postfix when missing; never starts the system instance. All
# traffic stays on 127.0.0.1, ports 20000-29999.
set -euo pipefail

MSGS=5000
SESS=20
PHASE_TIMEOUT=240
KEEP=0
SIZE=2048
usage() { echo "usage: $0 [-n MESSAGES] [-s SESSIONS] [-t TIMEOUT_S] [-k]" >&2; exit 1; }
while getopts "n:s:t:kh" opt; do
	case $opt in
	n) MSGS=$OPTARG ;;
	s) SESS=$OPTARG ;;
	t) PHASE_TIMEOUT=$OPTARG ;;
	k) KEEP=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
for v in "$MSGS" "$SESS" "$PHASE_TIMEOUT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "relay.sh: not a positive integer: $v" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "relay.sh: must run as root (private Postfix instance, smtp-sink -u postfix)" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[relay.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 2; }

# ---------------------------------------------------------------- setup --

if ! command -v postfix >/dev/null || ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then
	log "installing postfix (Debian package, not started)"
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >/dev/null; } ||
		die "apt-get install postfix failed"
fi
# Postfix's tools read the default main.cf even when given -c.
if [[ ! -f /etc/postfix/main.cf ]]; then
	cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
fi
for c in postfix postqueue smtp-source smtp-sink ss go timeout script bc; do
	command -v "$c" >/dev/null || die "missing command: $c"
done

TMP=$(mktemp -d /tmp/mailtee-relay-bench.XXXXXX)
chmod 755 "$TMP" # the postfix user must reach its queue directory below
PF_DIR=$TMP/postfix      # private Postfix: config, queue, data, log
MT_DIR=$TMP/mt           # mailtee: config, log (the binary is $TMP/mailtee)
SINK_PIDS=()
BG_PIDS=()
MT_PID=
PF_STARTED=0

cleanup() {
	local rc=$?
	set +e
	if [[ -n $MT_PID ]] && kill -0 "$MT_PID" 2>/dev/null; then
		kill -TERM "$MT_PID" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$MT_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$MT_PID" 2>/dev/null
		wait "$MT_PID" 2>/dev/null
	fi
	[[ $PF_STARTED -eq 1 ]] && pf_stop
	for p in "${BG_PIDS[@]}" "${SINK_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [[ $KEEP -eq 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
# pf_stop: stop the private Postfix and wait (bounded) for its master to exit.
pf_stop() {
	local mp=
	[[ -f $PF_DIR/queue/pid/master.pid ]] && mp=$(tr -dc 0-9 <"$PF_DIR/queue/pid/master.pid" 2>/dev/null)
	postfix -c "$PF_DIR/etc" stop >/dev/null 2>&1 || true
	PF_STARTED=0
	[[ -n $mp ]] || return 0
	for _ in $(seq 100); do
		kill -0 "$mp" 2>/dev/null || return 0
		sleep 0.1
	done
	log "warning: Postfix master $mp still running 10 s after postfix stop"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port: sets PORT to a port in 20000-29999 (below the ephemeral
# range) that nobody uses and this script has not handed out yet.
USED_PORTS=" "
free_port() {
	local p i
	for i in $(seq 200); do
		p=$((20000 + RANDOM % 10000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then
			USED_PORTS+="$p "
			PORT=$p
			return 0
		fi
	done
	die "no free port found"
}

# wait_listen PORT SECONDS: until something listens on 127.0.0.1:PORT.
wait_listen() {
	local port=$1 deadline=$((SECONDS + $2))
	while ((SECONDS < deadline)); do
		[[ -n $(ss -Hltn "( sport = :$port )" 2>/dev/null) ]] && return 0
		sleep 0.05
	done
	return 1
}

# start_sink NAME: smtp-sink on a fresh port with running counters (-c) in
# $TMP/NAME.sink; sets SINK_PORT and SINK_OUT.
start_sink() {
	free_port
	SINK_PORT=$PORT
	SINK_OUT=$TMP/$1.sink
	smtp-sink -c -u postfix "127.0.0.1:$SINK_PORT" 256 >"$SINK_OUT" 2>"$TMP/$1.sink.err" &
	SINK_PIDS+=("$!")
	wait_listen "$SINK_PORT" 10 || die "smtp-sink did not listen on $SINK_PORT: $(cat "$TMP/$1.sink.err")"
}

# sink_count FILE: messages the sink has received so far. smtp-sink -c
# appends "\rsess=N quit=N mesg=N" after each event; take the last one
# (a half-written last record can only read low, never high).
sink_count() {
	local n
	n=$(tail -c 120 "$1" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2) || true
	echo "${n:-0}"
}

now() { date +%s.%N; }

# run_source PORT OUTFILE: smtp-source in the background; sets SRC_PID.
run_source() {
	timeout "$PHASE_TIMEOUT" smtp-source -s "$SESS" -m "$MSGS" -l "$SIZE" \
		-f sender@bench.example -t rcpt@sink.example "127.0.0.1:$1" >"$2" 2>&1 &
	SRC_PID=$!
}

# wait_done NAME SINKFILE QUEUE_EMPTY_CMD... : waits (bounded) until the
# source has finished, the sink counted MSGS and the queue command reports
# an empty queue. Sets END. While smtp-source runs nothing is polled (the
# machine has few cores; polling would slow what is measured); smtp-source
# is itself bounded by `timeout`. Then the sink and queue are polled every
# 50 ms.
wait_done() {
	local name=$1 sinkf=$2
	shift 2
	local deadline=$((SECONDS + PHASE_TIMEOUT)) n=0
	local rc=0
	wait "$SRC_PID" || rc=$?
	if ((rc == 124)); then
		die "$name: smtp-source still sending after ${PHASE_TIMEOUT}s (sink counted $(sink_count "$sinkf") of $MSGS)"
	elif ((rc != 0)); then
		die "$name: smtp-source failed (exit $rc): $(tail -n 5 "$TMP/$name.source")"
	fi
	while ((SECONDS < deadline)); do
		n=$(sink_count "$sinkf")
		if ((n > MSGS)); then
			die "$name: sink counted $n messages, more than the $MSGS sent (duplicates)"
		fi
		if ((n == MSGS)) && "$@"; then
			END=$(now)
			return 0
		fi
		sleep 0.05
	done
	die "$name: not all delivered ${PHASE_TIMEOUT}s after smtp-source finished (sink counted $n of $MSGS)"
}

# Memory sampler: once a second, one awk over /proc, for the process PID
# and its children: per program the largest VmHWM, and the sum of Pss
# (proportional set size: shared pages split among the processes sharing
# them, so the sum is what the processes together cost). Runs in the
# background, bounded in count; prints one line per sample:
#   T sum_pss_kB name:hwm name:hwm ...
BG_PIDS=()
mem_sample() { # mem_sample PID
	awk -v root="$1" '
	FNR == 1 { f = FILENAME; sub("^/proc/", "", f); sub("/status$", "", f); pid = f }
	$1 == "Name:"  { name[pid] = $2 }
	$1 == "PPid:"  { ppid[pid] = $2 }
	$1 == "VmHWM:" { hwm[pid] = $2 }
	END {
		sum = 0; out = ""
		for (p in name) {
			if (p != root && ppid[p] != root) continue
			if (!(p in hwm)) continue
			f = "/proc/" p "/smaps_rollup"
			while ((getline line < f) > 0) { split(line, w, " "); if (w[1] == "Pss:") sum += w[2] }
			close(f)
			if (hwm[p] > best[name[p]]) best[name[p]] = hwm[p]
		}
		for (n in best) out = out " " n ":" best[n]
		print "T " sum out
	}' /proc/[0-9]*/status 2>/dev/null || true
}
start_sampler() { # start_sampler PID FILE
	(
		for _ in $(seq $((3 * PHASE_TIMEOUT))); do
			kill -0 "$1" 2>/dev/null || exit 0
			mem_sample "$1"
			sleep 1
		done
	) >"$2" &
	BG_PIDS+=("$!")
	SAMPLER_PID=$!
}
# sampler_report FILE: "name max_hwm" lines and "SUM max_pss".
sampler_report() {
	awk '$1 == "T" { if ($2 > s) s = $2; for (i = 3; i <= NF; i++) { split($i, kv, ":"); if (kv[2] + 0 > m[kv[1]]) m[kv[1]] = kv[2] + 0 } }
		END { for (n in m) print n, m[n]; print "SUM", s + 0 }' "$1"
}

declare -A ELAPSED RATE RSS
record() { # NAME START END RSSNOTE
	local el
	el=$(echo "$3 - $2" | bc -l)
	ELAPSED[$1]=$(printf '%.2f' "$el")
	RATE[$1]=$(printf '%.0f' "$(echo "$MSGS / $el" | bc -l)")
	RSS[$1]=$4
	log "$1: $MSGS messages in ${ELAPSED[$1]} s = ${RATE[$1]} msg/s"
}

vm() { # vm PID FIELD -> kB value or empty
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

# ------------------------------------------------------------ build mailtee --

MAILTEE_OK=0
MAILTEE_WHY=
log "building mailtee"
if (cd "$REPO" && go build -o "$TMP/mailtee" ./cmd/mailtee) >"$TMP/build.log" 2>&1; then
	MAILTEE_OK=1
else
	MAILTEE_WHY="go build ./cmd/mailtee failed: $(grep -m1 -v '^#' "$TMP/build.log" || true)"
	log "mailtee does not build; its phase is skipped:"
	sed 's/^/    /' "$TMP/build.log" | head -n 15 >&2
fi

# ------------------------------------------------------------- 1. ceiling --

log "ceiling: smtp-source -> smtp-sink, $SESS sessions, $MSGS x $SIZE bytes"
start_sink ceiling
START=$(now)
run_source "$SINK_PORT" "$TMP/ceiling.source"
wait_done ceiling "$SINK_OUT" true
record ceiling "$START" "$END" "-"

# -------------------------------------------------------------- 2. Postfix --

free_port
PF_PORT=$PORT
start_sink postfix
PF_SINK_PORT=$SINK_PORT PF_SINK_OUT=$SINK_OUT
mkdir -p "$PF_DIR/etc" "$PF_DIR/queue" "$PF_DIR/data"
chown postfix:root "$PF_DIR/data" # `postfix check` creates the queue's subdirectories
chmod 700 "$PF_DIR/data"
cat >"$PF_DIR/etc/main.cf" <<EOF
# private Postfix instance for bench/relay.sh
compatibility_level = 3.6
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $TMP
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.example
myorigin = bench.example
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relayhost =
transport_maps = inline:{ sink.example=smtp:[127.0.0.1]:$PF_SINK_PORT }
alias_maps =
alias_database =
local_recipient_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = none
default_destination_concurrency_limit = 20
biff = no
EOF
# chroot off everywhere: the queue directory is not a prepared chroot jail.
cat >"$PF_DIR/etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
log "postfix: private instance on 127.0.0.1:$PF_PORT, sink on $PF_SINK_PORT"
# Postfix commands report fatal errors on stderr only when it is a
# terminal (otherwise to syslog/maillog): run them under script(1).
pf_cmd() { # pf_cmd ARGS...
	timeout 60 script -qec "postfix -c '$PF_DIR/etc' $*" /dev/null >>"$TMP/postfix.setup" 2>&1 ||
		die "postfix $*: $(tr -d '\r' <"$TMP/postfix.setup" | tail -n 5; tail -n 5 "$PF_DIR/maillog" 2>/dev/null)"
}
pf_cmd check # also creates the queue directories, owned by postfix
PF_STARTED=1
pf_cmd start
wait_listen "$PF_PORT" 20 || die "postfix smtpd did not listen on $PF_PORT: $(tail -n 10 "$PF_DIR/maillog" 2>/dev/null)"
PF_MASTER=$(tr -dc 0-9 <"$PF_DIR/queue/pid/master.pid")

pf_queue_empty() {
	postqueue -c "$PF_DIR/etc" -p 2>/dev/null | grep -q '^Mail queue is empty'
}
pf_queue_empty || die "postfix: queue not empty before the run"

log "postfix: smtp-source -> postfix -> smtp-sink"
start_sampler "$PF_MASTER" "$TMP/postfix.mem"
START=$(now)
run_source "$PF_PORT" "$TMP/postfix.source"
wait_done postfix "$PF_SINK_OUT" pf_queue_empty
mem_sample "$PF_MASTER" >>"$TMP/postfix.mem"
kill "$SAMPLER_PID" 2>/dev/null || true
declare -A PFM
while read -r k v; do PFM[$k]=$v; done < <(sampler_report "$TMP/postfix.mem")
PF_RSS="all processes ${PFM[SUM]:-?} kB (peak of summed Pss, sampled 1/s); per process VmHWM: smtpd ${PFM[smtpd]:-?}, cleanup ${PFM[cleanup]:-?}, qmgr ${PFM[qmgr]:-?}, smtp ${PFM[smtp]:-?}, master ${PFM[master]:-?} kB"
record postfix "$START" "$END" "$PF_RSS"
PF_SENT=$(grep -c 'status=sent' "$PF_DIR/maillog" || true)
log "postfix: maillog has $PF_SENT status=sent lines"
pf_stop

# -------------------------------------------------------------- 3. mailtee --

if [[ $MAILTEE_OK -eq 1 ]]; then
	free_port
	MT_PORT=$PORT
	start_sink mailtee
	MT_SINK_PORT=$SINK_PORT MT_SINK_OUT=$SINK_OUT
	mkdir -p "$MT_DIR" "$TMP/mq"
	cat >"$MT_DIR/main.cf" <<EOF
# mailtee for bench/relay.sh — same settings as the private Postfix
compatibility_level = 3.6
myhostname = bench.example
myorigin = bench.example
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_port = $MT_PORT
mynetworks = 127.0.0.0/8
mydestination =
relayhost =
queue_directory = $TMP/mq
maillog_file = $MT_DIR/maillog
transport_maps = inline:{ sink.example=smtp:[127.0.0.1]:$MT_SINK_PORT }
alias_maps =
local_recipient_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = none
default_destination_concurrency_limit = 20
EOF
	log "mailtee: serve on 127.0.0.1:$MT_PORT, sink on $MT_SINK_PORT"
	"$TMP/mailtee" check -c "$MT_DIR" >"$TMP/mailtee.check" 2>&1 ||
		die "mailtee check: $(cat "$TMP/mailtee.check")"
	"$TMP/mailtee" serve -c "$MT_DIR" >"$TMP/mailtee.out" 2>&1 &
	MT_PID=$!
	if ! wait_listen "$MT_PORT" 20; then
		die "mailtee did not listen on $MT_PORT: $(tail -n 10 "$TMP/mailtee.out")"
	fi
	mt_queue_empty() {
		"$TMP/mailtee" queue -c "$MT_DIR" list 2>/dev/null | grep -q '^Mail queue is empty'
	}
	mt_queue_empty || die "mailtee: queue not empty before the run: $("$TMP/mailtee" queue -c "$MT_DIR" list 2>&1 | head -n 5)"
	log "mailtee: smtp-source -> mailtee -> smtp-sink"
	start_sampler "$MT_PID" "$TMP/mailtee.mem"
	START=$(now)
	run_source "$MT_PORT" "$TMP/mailtee.source"
	wait_done mailtee "$MT_SINK_OUT" mt_queue_empty
	kill -0 "$MT_PID" 2>/dev/null || die "mailtee serve exited: $(tail -n 10 "$TMP/mailtee.out")"
	kill "$SAMPLER_PID" 2>/dev/null || true
	MT_PSS=$(sampler_report "$TMP/mailtee.mem" | awk '$1 == "SUM" { print $2 }')
	MT_HWM=$(vm "$MT_PID" VmHWM)
	record mailtee "$START" "$END" "${MT_HWM:-?} kB (VmHWM of the one process; peak Pss sampled 1/s: ${MT_PSS:-?} kB)"
	MT_SENT=$(grep -c 'status=sent' "$MT_DIR/maillog" || true)
	log "mailtee: maillog has $MT_SENT status=sent lines"
	kill -TERM "$MT_PID"
	wait "$MT_PID" || log "mailtee serve exited with status $? after SIGTERM"
	MT_PID=
fi

# --------------------------------------------------------------- report --

echo
echo "relay benchmark: smtp-source -> MTA -> smtp-sink, $SESS sessions, $MSGS messages of $SIZE bytes, 127.0.0.1, $(nproc) CPUs"
printf '%-10s %8s %10s %11s %11s\n' system msg/s elapsed_s x_postfix pct_ceiling
for s in ceiling postfix mailtee; do
	if [[ -n ${RATE[$s]:-} ]]; then
		xp=-
		[[ -n ${RATE[postfix]:-} ]] && xp=$(printf '%.2f' "$(echo "${ELAPSED[postfix]} / ${ELAPSED[$s]}" | bc -l)")
		printf '%-10s %8s %10s %11s %10.1f%%\n' "$s" "${RATE[$s]}" "${ELAPSED[$s]}" "$xp" \
			"$(echo "100 * ${ELAPSED[ceiling]} / ${ELAPSED[$s]}" | bc -l)"
	else
		printf '%-10s %8s %10s %11s %11s\n' "$s" - - - -
	fi
done
if [[ -n ${RATE[mailtee]:-} ]]; then
	printf 'ratio mailtee/Postfix (msg/s): %.2f\n' "$(echo "${ELAPSED[postfix]} / ${ELAPSED[mailtee]}" | bc -l)"
else
	echo "ratio mailtee/Postfix: n/a (mailtee not measured: $MAILTEE_WHY)"
fi
echo "peak memory:"
echo "  postfix: ${RSS[postfix]}"
echo "  mailtee: ${RSS[mailtee]:-n/a}"
