#!/usr/bin/env bash
# bench/compare.sh — mailtee side by side with Postfix, same run, loopback.
#
# What: three scenarios, each run first for a private Postfix instance and
# then for mailtee, configured with the same main.cf settings, measured
# with Postfix's own load tools (smtp-source → MTA → smtp-sink):
#
#   relay    smtp-source → MTA → smtp-sink (transport_maps routes
#            sink.example to the sink). Also the loopback ceiling:
#            smtp-source straight into smtp-sink.
#   seed     the dual-delivery "seed flow": smtp-source → PRIMARY MTA, which
#            delivers each message to a local Maildir AND (recipient_bcc_maps)
#            copies it to a RELAY MTA, which forwards it to smtp-sink. Two
#            instances per system (two private Postfixes; two mailtee
#            processes).
#   backlog  with the sink down, B messages are injected into the relay MTA
#            (they are tried and deferred); once all are queued the sink is
#            started and the queue flushed (postqueue -f / mailtee queue
#            flush): drain time until the sink has all and the queue is empty.
#
# How: elapsed time runs from the start of smtp-source until every message
# is delivered — the sink counted them all (and, for seed, the Maildir holds
# them all) AND every queue involved is empty. For each MTA in relay and
# seed a latency probe (bench/smtplat, built here) runs next to
# smtp-source on one more session and measures DATA→250 (end of data to
# the server's 250, i.e. the time to put the message safely on disk) under
# that load; its accepted messages are added to what must be delivered,
# and msg/s counts them too (the ceiling runs without it).
# Peak memory: for mailtee the VmHWM of its process(es) plus that of their
# children (the helpers that write mailboxes as their owner); for Postfix the
# peak, sampled once a second, of the summed Pss (proportional set size) of
# all processes of its instance(s) (master and its children).
#
# Usage: bench/compare.sh [-n MESSAGES] [-s SESSIONS] [-b BACKLOG]
#                         [-t PHASE_TIMEOUT_S] [-o SCENARIOS] [-k]
#   -n  messages per relay/seed run (default 5000, 2 KB each)
#   -s  parallel smtp-source sessions (default 20)
#   -b  messages injected in the backlog scenario (default 100000)
#   -t  bound, in seconds, on each wait of relay and seed (default 240);
#       the backlog's injection and drain get -t + BACKLOG/20 each
#   -o  comma list of scenarios to run: relay,seed,backlog (default all)
#   -k  keep the temporary directory (configs, logs, sink counters)
# Environment: MAILTEE_BIN=/path/to/mailtee uses that binary; unset, mailtee
# is built from this repository (go build ./cmd/mailtee).
# MAILTEE_EXTRA_CF: main.cf lines appended to every mailtee instance's
# main.cf, after the scenario's (Postfix never sees them): e.g.
# MAILTEE_EXTRA_CF='ledger_database =' runs mailtee without its ledger.
# MT_ONLY=1 runs mailtee only (no Postfix, no ceiling); PF_ONLY=1 runs
# Postfix and the ceiling only (bench/ledger-ab.sh alternates mailtee
# runs and measures Postfix once, for reference).
# SEED_ONEBOX=1 runs mailtee's seed in one box: no relay instance, the
# primary gets copy_transport = smtp:[127.0.0.1]:SINKPORT (its copies go
# straight to the sink); Postfix's seed is unchanged.
#
# Output: a table per scenario — msg/s, elapsed seconds, messages
# delivered (smtp-source's plus the probe's), x_pf (msg/s relative to
# Postfix: the mailtee/Postfix ratio), the probe's DATA→250 p50/p99/max in
# ms, peak memory — then the status counts and first warning/error lines
# of every instance's log, then one machine-readable line per scenario:
#   RESULT relay postfix=217 mailtee=518 ratio=2.39 ceiling=4302 ...
# A phase that fails is reported (FAILED: reason) and the run goes on; the
# exit status is then 2.
#
# Settings (main.cf, the same for both MTAs; mailtee also gets smtpd_port,
# Postfix its smtpd port in master.cf): all instances inet_interfaces =
# 127.0.0.1, mynetworks = 127.0.0.0/8, no TLS, alias_maps empty,
# default_destination_concurrency_limit = 20.
#   relay    mydestination empty, transport_maps =
#            inline:{ sink.example=smtp:[127.0.0.1]:SINKPORT }
#   seed     primary: myhostname primary.bench.example (not the relay's:
#            Postfix's smtp client refuses a peer greeting with its own
#            name), mydestination = bench.example, mail_spool_directory =
#            DIR/mail/ (Maildir DIR/mail/mtbench/{new,cur,tmp} in both),
#            local_recipient_maps = proxy:unix:passwd.byname $alias_maps,
#            recipient_bcc_maps = static:copy@relay.example, transport_maps
#            = inline:{ relay.example=smtp:[127.0.0.1]:RELAYPORT },
#            local_destination_concurrency_limit = 20 (Postfix's limit is
#            per recipient, 2 by default; mailtee's local next hop is the
#            domain, with the default limit, 20: with the one recipient
#            of this test, both then deliver up to 20 at once);
#            relay: relay_domains = relay.example, transport_maps to the sink.
#            smtp-source sends to mtbench@bench.example. Postfix's local(8)
#            writes the Maildir as mtbench (DIR/mail is chowned to it);
#            mailtee, running as root, writes it through a helper process
#            (mailtee local-helper) with mtbench's uid and gid, as local(8)
#            does.
#   backlog  as relay; smtp-source -d (several messages per connection).
#
# Needs root (private Postfix instances, smtp-sink -u postfix, the system
# user mtbench that Postfix's local(8) delivers as; created when missing).
# Installs Debian's postfix when missing; never starts the system
# instance and never uses port 25: everything is on 127.0.0.1, ports
# 20000-29999. Every wait is bounded. On any exit, everything started here
# is stopped (by its process id) and the private Postfixes are stopped.
set -euo pipefail

MSGS=5000
SESS=20
BACKLOG=100000
PHASE_TIMEOUT=240
SCENARIOS=relay,seed,backlog
KEEP=0
SIZE=2048
BENCH_USER=mtbench
usage() { # the "Usage:" paragraph of the comment above
	sed -n '/^# Usage:/,/^# runs and measures Postfix once/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 1
}
while getopts "n:s:b:t:o:kh" opt; do
	case $opt in
	n) MSGS=$OPTARG ;;
	s) SESS=$OPTARG ;;
	b) BACKLOG=$OPTARG ;;
	t) PHASE_TIMEOUT=$OPTARG ;;
	o) SCENARIOS=$OPTARG ;;
	k) KEEP=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
for v in "$MSGS" "$SESS" "$BACKLOG" "$PHASE_TIMEOUT"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: not a positive integer: $v" >&2; exit 1; }
done
RUN_RELAY=0 RUN_SEED=0 RUN_BACKLOG=0
IFS=, read -ra _scen <<<"$SCENARIOS"
[[ ${#_scen[@]} -gt 0 ]] || usage
for s in "${_scen[@]}"; do
	case $s in
	relay) RUN_RELAY=1 ;;
	seed) RUN_SEED=1 ;;
	backlog) RUN_BACKLOG=1 ;;
	*) echo "compare.sh: unknown scenario '$s' (relay, seed, backlog)" >&2; exit 1 ;;
	esac
done
RUN_PF=1 RUN_MT=1
[[ ${MT_ONLY:-0} == 1 ]] && RUN_PF=0
[[ ${PF_ONLY:-0} == 1 ]] && RUN_MT=0
((RUN_PF + RUN_MT > 0)) || { echo "compare.sh: MT_ONLY=1 and PF_ONLY=1 leave nothing to run" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "compare.sh: must run as root (private Postfix instances, smtp-sink -u postfix)" >&2; exit 1; }
# The backlog's injection and drain each get this long.
BACKLOG_TIMEOUT=$((PHASE_TIMEOUT + BACKLOG / 20))

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[compare.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
# die: fail the current phase (phases run in subshells: the run goes on
# with the next one) or, outside a phase, the whole run.
die() {
	log "FAIL: $*"
	[[ -n ${PHASE_FAIL:-} ]] && printf '%s\n' "$*" >"$PHASE_FAIL"
	exit 2
}

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
for c in postfix postqueue smtp-source smtp-sink ss timeout script bc awk find useradd; do
	command -v "$c" >/dev/null || die "missing command: $c"
done
[[ -n ${MAILTEE_BIN:-} ]] || command -v go >/dev/null || die "missing command: go"
command -v go >/dev/null || die "missing command: go (to build bench/smtplat)"
# Postfix's local(8) delivers as the recipient's Unix user: the seed
# scenario's mailbox owner. A system user with no home and no shell.
if [[ $RUN_SEED -eq 1 ]] && ! id "$BENCH_USER" >/dev/null 2>&1; then
	log "creating system user $BENCH_USER (Postfix local(8) delivers as the recipient's user)"
	useradd -r -M -s /usr/sbin/nologin "$BENCH_USER" || die "useradd $BENCH_USER failed"
fi

TMP=$(mktemp -d /tmp/mailtee-compare.XXXXXX)
chmod 755 "$TMP" # the postfix user (and mtbench) must reach their directories below
REG=$TMP/registry # what was started: "mt PID START", "bg PID START", "pf DIR"
RES=$TMP/results  # one file per figure, written by the phases
mkdir -p "$RES"
: >"$REG"
PHASE_PID=

# pstart PID: the process's start time (field 22 of /proc/PID/stat), empty
# when there is no such process: with the pid it names one process for
# good, so nothing but what this script started is ever signalled.
pstart() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	s=${s##*) }
	# shellcheck disable=SC2086 # split the fields on purpose
	set -- $s
	[[ $1 == Z ]] && return 0 # a zombie has exited
	echo "${20}"
}
# reg KIND ID: remember a process (KIND mt = mailtee, stopped gracefully;
# bg = anything else) or a Postfix instance (KIND pf, ID its directory).
reg() {
	local st=
	[[ $1 == pf ]] || st=$(pstart "$2")
	echo "$1 $2 $st" >>"$REG"
}
# running PID START: that very process is still running.
running() { [[ -n $2 && $(pstart "$1") == "$2" ]]; }

# release_all: stops everything in the registry and empties it: mailtee
# with SIGTERM (10 s for in-flight work, then SIGKILL), the Postfix
# instances with `postfix stop`, the rest with SIGTERM then SIGKILL.
release_all() {
	local kind id st left pass
	[[ -s $REG ]] || return 0
	for pass in mt pf bg; do
		if [[ $pass == pf ]]; then
			while read -r kind id st; do
				[[ $kind == pf ]] && pf_stop "$id"
			done <"$REG"
			continue
		fi
		while read -r kind id st; do
			[[ $kind == "$pass" ]] && running "$id" "$st" && kill -TERM "$id" 2>/dev/null
		done <"$REG"
		for _ in $(seq 100); do
			left=0
			while read -r kind id st; do
				[[ $kind == "$pass" ]] && running "$id" "$st" && left=1
			done <"$REG"
			[[ $left -eq 0 ]] && break
			sleep 0.1
		done
		while read -r kind id st; do
			if [[ $kind == "$pass" ]] && running "$id" "$st"; then
				log "warning: process $id ($kind) still running 10 s after SIGTERM; SIGKILL"
				kill -KILL "$id" 2>/dev/null
			fi
		done <"$REG"
	done
	: >"$REG"
}

# pf_stop DIR: stop a private Postfix and wait (bounded) for its master.
pf_stop() {
	local d=$1 mp=
	[[ -f $d/queue/pid/master.pid ]] && mp=$(tr -dc 0-9 <"$d/queue/pid/master.pid" 2>/dev/null)
	timeout 30 postfix -c "$d/etc" stop >/dev/null 2>&1 || true
	[[ -n $mp ]] || return 0
	for _ in $(seq 100); do
		kill -0 "$mp" 2>/dev/null || return 0
		sleep 0.1
	done
	log "warning: Postfix master $mp ($d) still running 10 s after postfix stop; postfix abort"
	timeout 30 postfix -c "$d/etc" abort >/dev/null 2>&1 || true
}

cleanup() {
	local rc=$?
	set +e
	trap - INT TERM
	if [[ -n $PHASE_PID ]] && kill -0 "$PHASE_PID" 2>/dev/null; then
		kill -TERM "$PHASE_PID" 2>/dev/null
		wait "$PHASE_PID" 2>/dev/null
	fi
	release_all
	if [[ $KEEP -eq 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# start_sink NAME [PORT]: smtp-sink on PORT (default: a fresh one) with
# running counters (-c) in $TMP/NAME.sink; sets SINK_PORT and SINK_OUT.
start_sink() {
	if [[ -n ${2:-} ]]; then
		SINK_PORT=$2
	else
		free_port
		SINK_PORT=$PORT
	fi
	SINK_OUT=$TMP/$1.sink
	smtp-sink -c -u postfix "127.0.0.1:$SINK_PORT" 256 >"$SINK_OUT" 2>"$TMP/$1.sink.err" &
	reg bg $!
	wait_listen "$SINK_PORT" 10 || die "smtp-sink did not listen on $SINK_PORT: $(cat "$TMP/$1.sink.err")"
}

# sink_count FILE: messages the sink has received so far. smtp-sink -c
# appends "\rsess=N quit=N mesg=N" after each event; take the last one
# (a half-written last record can only read low, never high).
sink_count() {
	local n
	n=$(tail -c 120 "$1" 2>/dev/null | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2) || true
	echo "${n:-0}"
}

# maildir_count DIR: messages in the Maildir DIR (files in DIR/new).
maildir_count() {
	if [[ -d $1/new ]]; then
		find "$1/new" -mindepth 1 -maxdepth 1 -type f 2>/dev/null | wc -l
	else
		echo 0
	fi
}

now() { date +%s.%N; }
tag() { if [[ $1 == postfix ]]; then echo pf; else echo mt; fi; } # tag SYSTEM: pf or mt
calc() { echo "$*" | bc -l; }
put() { printf '%s\n' "$2" >"$RES/$1"; } # put KEY VALUE: a result
get() { # get KEY: a result, or "-"
	if [[ -s $RES/$1 ]]; then cat "$RES/$1"; else echo -; fi
}

# ------------------------------------------------------ memory sampling --

# mem_sample ROOTS: one awk over /proc for the processes in ROOTS (comma
# list of pids) and their children: per program name the largest VmHWM,
# and the sum of Pss (shared pages split among the processes sharing
# them, so the sum is what the processes together cost). One line:
#   T sum_pss_kB name:hwm name:hwm ...
mem_sample() {
	awk -v roots="$1" '
	BEGIN { n = split(roots, r, ","); for (i = 1; i <= n; i++) isroot[r[i]] = 1 }
	FNR == 1 { f = FILENAME; sub("^/proc/", "", f); sub("/status$", "", f); pid = f }
	$1 == "Name:"  { name[pid] = $2 }
	$1 == "PPid:"  { ppid[pid] = $2 }
	$1 == "VmHWM:" { hwm[pid] = $2 }
	END {
		sum = 0; out = ""
		for (p in name) {
			if (!(p in isroot) && !(ppid[p] in isroot)) continue
			if (!(p in hwm)) continue
			f = "/proc/" p "/smaps_rollup"
			while ((getline line < f) > 0) { split(line, w, " "); if (w[1] == "Pss:") sum += w[2] }
			close(f)
			if (hwm[p] > best[name[p]]) best[name[p]] = hwm[p]
		}
		for (k in best) out = out " " k ":" best[k]
		print "T " sum out
	}' /proc/[0-9]*/status 2>/dev/null || true
}
# start_sampler ROOTS FILE SECONDS: mem_sample once a second in the
# background, for at most SECONDS samples or until the first root exits.
start_sampler() {
	local first=${1%%,*}
	(
		for _ in $(seq "$3"); do
			kill -0 "$first" 2>/dev/null || exit 0
			mem_sample "$1"
			sleep 1
		done
	) >"$2" &
	reg bg $!
}
# sampler_report FILE: "name max_hwm" lines and "SUM max_pss".
sampler_report() {
	awk '$1 == "T" { if ($2 > s) s = $2; for (i = 3; i <= NF; i++) { split($i, kv, ":"); if (kv[2] + 0 > m[kv[1]]) m[kv[1]] = kv[2] + 0 } }
		END { for (n in m) print n, m[n]; print "SUM", s + 0 }' "$1"
}
vm() { # vm PID FIELD -> kB value or empty
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true
}
mt_kids() { cat /proc/"$1"/task/*/children 2>/dev/null || true; } # mt_kids PID: its children
# mt_hwm PID: VmHWM of a mailtee server plus those of its children, the
# local delivery helpers that write mailboxes with their owner's uid and
# gid (part of mailtee's cost, as local(8) is of Postfix's), kB. Read
# while they run: a helper lives 60 s past its last delivery.
mt_hwm() {
	local sum c h
	sum=$(vm "$1" VmHWM)
	[[ -n $sum ]] || return 0
	for c in $(mt_kids "$1"); do
		h=$(vm "$c" VmHWM)
		sum=$((sum + ${h:-0}))
	done
	echo "$sum"
}

# ----------------------------------------------------------- the MTAs --

# Settings both MTAs get, for every instance; each scenario adds its own.
common_cf() { # common_cf MYHOSTNAME
	cat <<EOF
compatibility_level = 3.6
myhostname = $1
myorigin = bench.example
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = none
default_destination_concurrency_limit = 20
EOF
}

# pf_start NAME PORT SETTINGS: a private Postfix instance in $TMP/NAME
# (etc/, queue/, data/, maillog), smtpd on 127.0.0.1:PORT, chroot off;
# sets PF_MASTER. Registered for release_all.
pf_start() {
	local name=$1 port=$2 d=$TMP/$1
	mkdir -p "$d/etc" "$d/queue" "$d/data"
	chmod 755 "$d"
	chown postfix:root "$d/data" # `postfix check` creates the queue's subdirectories
	chmod 700 "$d/data"
	{
		echo "# private Postfix instance $name for bench/compare.sh"
		echo "$3"
		cat <<EOF
queue_directory = $d/queue
data_directory = $d/data
maillog_file = $d/maillog
maillog_file_prefixes = $TMP
mail_owner = postfix
setgid_group = postdrop
alias_database =
biff = no
EOF
	} >"$d/etc/main.cf"
	# chroot off everywhere: the queue directory is not a prepared chroot jail.
	cat >"$d/etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$port inet n - n - - smtpd
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
	pf_cmd "$d" check # also creates the queue directories, owned by postfix
	reg pf "$d"
	pf_cmd "$d" start
	wait_listen "$port" 20 || die "postfix $name did not listen on $port: $(tail -n 10 "$d/maillog" 2>/dev/null)"
	PF_MASTER=$(tr -dc 0-9 <"$d/queue/pid/master.pid")
	pf_queue_empty "$name" || die "postfix $name: queue not empty at start"
}
# pf_cmd DIR ARGS...: a postfix command. Postfix reports fatal errors on
# stderr only when it is a terminal (otherwise to the log): script(1).
pf_cmd() {
	local d=$1
	shift
	timeout 60 script -qec "postfix -c '$d/etc' $*" /dev/null >>"$d/setup.log" 2>&1 ||
		die "postfix $*: $(tr -d '\r' <"$d/setup.log" | tail -n 5; tail -n 5 "$d/maillog" 2>/dev/null)"
}
pf_queue_empty() { # pf_queue_empty NAME
	timeout 60 postqueue -c "$TMP/$1/etc" -p 2>/dev/null | grep -q '^Mail queue is empty'
}
# pf_queue_count NAME: messages in the queue (postqueue -p's last line).
pf_queue_count() {
	timeout 120 postqueue -c "$TMP/$1/etc" -p 2>/dev/null | queue_total
}
pf_flush() { timeout 60 postqueue -c "$TMP/$1/etc" -f; }
# queue_total: the count of mailq-style output (both MTAs print it).
queue_total() {
	awk '/^Mail queue is empty/ { n = 0 } /^-- .* in [0-9]+ Requests?\.$/ { n = $(NF - 1) } END { print n + 0 }'
}

# mt_start NAME PORT SETTINGS: `mailtee serve -c $TMP/NAME` (main.cf,
# maillog, queue/ and data/ there: the ledger is data/ledger.db, never
# /var/lib/mailtee's) on 127.0.0.1:PORT, then $MAILTEE_EXTRA_CF; sets
# MT_PID. Registered.
mt_start() {
	local name=$1 port=$2 d=$TMP/$1
	mkdir -p "$d/queue" "$d/data"
	chmod 755 "$d"
	{
		echo "# mailtee instance $name for bench/compare.sh"
		echo "$3"
		cat <<EOF
smtpd_port = $port
queue_directory = $d/queue
data_directory = $d/data
maillog_file = $d/maillog
EOF
		if [[ -n ${MAILTEE_EXTRA_CF:-} ]]; then
			echo "# MAILTEE_EXTRA_CF"
			printf '%s\n' "$MAILTEE_EXTRA_CF"
		fi
	} >"$d/main.cf"
	"$MAILTEE" check -c "$d" >"$d/check.out" 2>&1 || die "mailtee check ($name): $(cat "$d/check.out")"
	"$MAILTEE" serve -c "$d" >"$d/serve.out" 2>&1 &
	MT_PID=$!
	reg mt "$MT_PID"
	wait_listen "$port" 20 || die "mailtee $name did not listen on $port: $(tail -n 10 "$d/serve.out")"
	mt_queue_empty "$name" || die "mailtee $name: queue not empty at start"
}
mt_queue_empty() { # mt_queue_empty NAME
	timeout 60 "$MAILTEE" queue -c "$TMP/$1" list 2>/dev/null | grep -q '^Mail queue is empty'
}
mt_queue_count() { timeout 120 "$MAILTEE" queue -c "$TMP/$1" list 2>/dev/null | queue_total; }
mt_flush() { timeout 60 "$MAILTEE" queue -c "$TMP/$1" flush; }
# mt_alive NAME PID: die when mailtee has exited.
mt_alive() {
	kill -0 "$2" 2>/dev/null || die "mailtee $1 exited: $(tail -n 10 "$TMP/$1/serve.out")"
}
# mt_stop NAME PID: SIGTERM, wait (bounded), report its exit status.
mt_stop() {
	local rc=0
	kill -TERM "$2" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$2" 2>/dev/null; then
		log "warning: mailtee $1 still running 10 s after SIGTERM"
		return 0 # release_all kills it
	fi
	wait "$2" || rc=$?
	[[ $rc -eq 0 ]] || log "warning: mailtee $1 exited with status $rc after SIGTERM: $(tail -n 3 "$TMP/$1/serve.out")"
}

# log_notes NAME...: what the logs of these instances say: status counts
# and the first lines that are warnings, errors, bounces or panics (and
# for mailtee, what it wrote on stderr), kept in $RES for the report.
log_notes() {
	local f name out=
	for name in "$@"; do
		f=$TMP/$name/maillog
		[[ -f $f ]] || continue
		out+="$name: $(grep -c 'status=sent' "$f" || true) status=sent, $(grep -c 'status=deferred' "$f" || true) status=deferred, $(grep -c 'status=bounced' "$f" || true) status=bounced"$'\n'
		out+=$(grep -Ei 'warning|error|fatal|panic|status=bounced' "$f" | grep -v 'status=deferred' | head -n 5 | sed 's/^/    /' || true)
		[[ $out == *$'\n' ]] || out+=$'\n'
		if [[ -f $TMP/$name/main.cf ]]; then # a mailtee instance
			if compgen -G "$TMP/$name/data/ledger.db*" >/dev/null; then
				out+="    ledger: $(du -ck "$TMP/$name"/data/ledger.db* | awk 'END { print $1 }') kB (data/ledger.db*)"$'\n'
			else
				out+="    ledger: none"$'\n'
			fi
		fi
		if [[ -s $TMP/$name/serve.out ]]; then
			out+=$(grep -Ei 'panic|fatal|error' "$TMP/$name/serve.out" | head -n 5 | sed 's/^/    serve: /' || true)
			[[ $out == *$'\n' ]] || out+=$'\n'
		fi
	done
	printf '%s' "$out" >>"$RES/notes"
}

# ------------------------------------------------------------ the load --

# load NAME PORT RCPT [noprobe]: smtp-source (MSGS messages, SESS
# sessions) into 127.0.0.1:PORT and, next to it (unless "noprobe"), the
# latency probe on one more session; when smtp-source is done the probe
# is stopped (it finishes the message in flight). Sets PROBE_N (messages
# the probe got 250 for) and PROBE_LINE. Nothing is polled meanwhile:
# the machine has few cores.
load() {
	local name=$1 port=$2 rcpt=$3 src probe rc=0 prc=0
	PROBE_N=0
	PROBE_LINE=
	if [[ ${4:-} == noprobe ]]; then
		timeout "$PHASE_TIMEOUT" smtp-source -s "$SESS" -m "$MSGS" -l "$SIZE" \
			-f sender@bench.example -t "$rcpt" "127.0.0.1:$port" >"$TMP/$name.source" 2>&1 || rc=$?
		((rc != 124)) || die "$name: smtp-source still sending after ${PHASE_TIMEOUT}s"
		((rc == 0)) || die "$name: smtp-source failed (exit $rc): $(tail -n 5 "$TMP/$name.source")"
		return 0
	fi
	timeout "$PHASE_TIMEOUT" smtp-source -s "$SESS" -m "$MSGS" -l "$SIZE" \
		-f sender@bench.example -t "$rcpt" "127.0.0.1:$port" >"$TMP/$name.source" 2>&1 &
	src=$!
	reg bg "$src"
	"$SMTPLAT" -addr "127.0.0.1:$port" -n "$MSGS" -t "${PHASE_TIMEOUT}s" -size "$SIZE" \
		-from probe@bench.example -to "$rcpt" >"$TMP/$name.probe" 2>"$TMP/$name.probe.err" &
	probe=$!
	reg bg "$probe"
	wait "$src" || rc=$?
	kill -TERM "$probe" 2>/dev/null || true
	wait "$probe" || prc=$?
	if ((rc == 124)); then
		die "$name: smtp-source still sending after ${PHASE_TIMEOUT}s"
	elif ((rc != 0)); then
		die "$name: smtp-source failed (exit $rc): $(tail -n 5 "$TMP/$name.source")"
	fi
	PROBE_LINE=$(tail -n 1 "$TMP/$name.probe" 2>/dev/null || true)
	[[ $PROBE_LINE =~ \ n=([0-9]+) ]] || die "$name: latency probe printed no result (exit $prc): $(tail -n 3 "$TMP/$name.probe.err")"
	PROBE_N=${BASH_REMATCH[1]}
	if ((prc != 0)); then
		die "$name: latency probe failed (exit $prc): $PROBE_LINE $(tail -n 3 "$TMP/$name.probe.err")"
	fi
	[[ -s $TMP/$name.probe.err ]] && log "$name: probe: $(head -n 3 "$TMP/$name.probe.err")"
	log "$name: probe $PROBE_LINE"
	return 0
}

# wait_delivered NAME TIMEOUT EXPECT SINKFILE MAILDIR QUEUE_CHECK...:
# polls every 50 ms (bounded by TIMEOUT seconds) until the sink counted
# EXPECT messages, the Maildir (when MAILDIR is not "-") holds EXPECT,
# and every QUEUE_CHECK ("pf_queue_empty NAME", ...) succeeds. More than
# EXPECT anywhere is a duplicate and fails the phase. Sets END.
wait_delivered() {
	local name=$1 limit=$2 deadline=$((SECONDS + $2)) expect=$3 sinkf=$4 maildir=$5 n m=- status q ok
	shift 5
	while :; do
		n=$(sink_count "$sinkf")
		((n <= expect)) || die "$name: sink counted $n messages, more than the $expect sent (duplicates)"
		status="sink $n of $expect"
		ok=0
		if ((n == expect)); then ok=1; fi
		if [[ $maildir != - ]]; then
			m=$(maildir_count "$maildir")
			((m <= expect)) || die "$name: Maildir $maildir holds $m messages, more than the $expect sent (duplicates)"
			status+=", Maildir $m of $expect"
			if ((m != expect)); then ok=0; fi
		fi
		if ((ok == 1)); then
			for q in "$@"; do
				# shellcheck disable=SC2086 # "function NAME"
				if ! $q; then
					ok=0
					status+=", queue not empty ($q)"
					break
				fi
			done
			if ((ok == 1)); then
				END=$(now)
				return 0
			fi
		fi
		((SECONDS < deadline)) || die "$name: not all delivered ${limit}s after smtp-source finished: $status"
		sleep 0.05
	done
}

# record KEY START END COUNT: elapsed seconds and msg/s.
record() {
	local el
	el=$(calc "$3 - $2")
	put "$1.elapsed" "$(printf '%.2f' "$el")"
	put "$1.count" "$4"
	put "$1.rate" "$(printf '%.0f' "$(calc "$4 / $el")")"
	log "$1: $4 messages in $(get "$1.elapsed") s = $(get "$1.rate") msg/s"
}
# record_probe KEY: the probe's percentiles.
record_probe() {
	local k
	for k in p50 p99 max; do
		[[ $PROBE_LINE =~ $k=([0-9.]+)ms ]] && put "$1.$k" "${BASH_REMATCH[1]}"
	done
	put "$1.probe_n" "$PROBE_N"
}
# record_pf_mem KEY SAMPLEFILE: peak summed Pss of a Postfix run.
record_pf_mem() {
	local pss detail
	pss=$(sampler_report "$2" | awk '$1 == "SUM" { print $2 }')
	detail=$(sampler_report "$2" | awk '$1 != "SUM" { printf "%s%s %s", sep, $1, $2; sep = ", " }')
	put "$1.mem" "$pss"
	put "$1.memnote" "peak summed Pss of all processes (sampled 1/s); largest VmHWM per program, kB: $detail"
}

# ----------------------------------------------------------- phases --

# ceiling: smtp-source straight into smtp-sink. Without the probe: on
# one connection for all its messages, against a sink that answers at
# once, it would send about as many as smtp-source's sessions together.
phase_relay_ceiling() {
	log "relay/ceiling: smtp-source -> smtp-sink, $SESS sessions, $MSGS x $SIZE bytes"
	start_sink relay-ceiling
	local start
	start=$(now)
	load relay-ceiling "$SINK_PORT" rcpt@sink.example noprobe
	wait_delivered relay-ceiling "$PHASE_TIMEOUT" "$MSGS" "$SINK_OUT" -
	record relay.ceiling "$start" "$END" "$MSGS"
}

# relay_cf SINKPORT MYHOSTNAME: the direct relay's settings.
relay_cf() {
	common_cf "$2"
	cat <<EOF
mydestination =
local_recipient_maps =
transport_maps = inline:{ sink.example=smtp:[127.0.0.1]:$1 }
EOF
}

phase_relay() { # phase_relay postfix|mailtee
	local sys=$1 name port start pss
	name=relay-$(tag "$sys")
	free_port
	port=$PORT
	start_sink "$name"
	if [[ $sys == postfix ]]; then
		pf_start "$name" "$port" "$(relay_cf "$SINK_PORT" bench.example)"
		start_sampler "$PF_MASTER" "$TMP/$name.mem" $((3 * PHASE_TIMEOUT))
	else
		mt_start "$name" "$port" "$(relay_cf "$SINK_PORT" bench.example)"
		start_sampler "$MT_PID" "$TMP/$name.mem" $((3 * PHASE_TIMEOUT))
	fi
	log "relay/$sys: smtp-source -> $sys on $port -> smtp-sink on $SINK_PORT"
	start=$(now)
	load "$name" "$port" rcpt@sink.example
	if [[ $sys == postfix ]]; then
		wait_delivered "$name" "$PHASE_TIMEOUT" $((MSGS + PROBE_N)) "$SINK_OUT" - "pf_queue_empty $name"
		mem_sample "$PF_MASTER" >>"$TMP/$name.mem"
		record_pf_mem "relay.$sys" "$TMP/$name.mem"
	else
		wait_delivered "$name" "$PHASE_TIMEOUT" $((MSGS + PROBE_N)) "$SINK_OUT" - "mt_queue_empty $name"
		mt_alive "$name" "$MT_PID"
		mem_sample "$MT_PID" >>"$TMP/$name.mem"
		pss=$(sampler_report "$TMP/$name.mem" | awk '$1 == "SUM" { print $2 }')
		put "relay.$sys.mem" "$(mt_hwm "$MT_PID")"
		put "relay.$sys.memnote" "VmHWM of the process (peak Pss sampled 1/s: $pss kB)"
	fi
	record "relay.$sys" "$start" "$END" $((MSGS + PROBE_N))
	record_probe "relay.$sys"
	if [[ $sys == mailtee ]]; then mt_stop "$name" "$MT_PID"; fi
}

# The seed flow. PRIMARY: bench.example is local (Maildir under
# mail_spool_directory, which ends in "/": DIR/mail/USER/new/ in both MTAs),
# every recipient gets a BCC copy to copy@relay.example, routed to the
# RELAY, which relays relay.example to the sink.
seed_primary_cf() { # seed_primary_cf RELAYPORT MAILDIR
	common_cf primary.bench.example
	cat <<EOF
mydestination = bench.example
local_recipient_maps = proxy:unix:passwd.byname \$alias_maps
mail_spool_directory = $2/
recipient_bcc_maps = static:copy@relay.example
transport_maps = inline:{ relay.example=smtp:[127.0.0.1]:$1 }
# Postfix's local limit is per recipient (2), mailtee's per domain (the
# default, 20): with the one recipient here, both write 20 at a time.
local_destination_concurrency_limit = 20
EOF
}
seed_relay_cf() { # seed_relay_cf SINKPORT
	common_cf relay.bench.example
	cat <<EOF
mydestination =
local_recipient_maps =
relay_domains = relay.example
transport_maps = inline:{ relay.example=smtp:[127.0.0.1]:$1 }
EOF
}

phase_seed() { # phase_seed postfix|mailtee
	local sys=$1 t p r pport rport start mail hp hr pss expect
	t=$(tag "$sys")
	p=seed-$t-primary
	r=seed-$t-relay
	free_port
	pport=$PORT
	free_port
	rport=$PORT
	start_sink "seed-$t"
	mail=$TMP/$p/mail
	mkdir -p "$mail"
	chmod 755 "$TMP/$p"
	if [[ $sys == postfix ]]; then
		# local(8) writes the Maildir as the recipient's user.
		chown "$BENCH_USER:" "$mail"
		pf_start "$r" "$rport" "$(seed_relay_cf "$SINK_PORT")"
		local rmaster=$PF_MASTER
		pf_start "$p" "$pport" "$(seed_primary_cf "$rport" "$mail")"
		start_sampler "$PF_MASTER,$rmaster" "$TMP/$p.mem" $((3 * PHASE_TIMEOUT))
	elif [[ ${SEED_ONEBOX:-0} == 1 ]]; then
		# one box: no relay; the primary's copies leave by copy_transport
		# straight to the sink (helper B's copy_transport, issue 18).
		local rpid=
		mt_start "$p" "$pport" "$(seed_primary_cf "$rport" "$mail")
copy_transport = smtp:[127.0.0.1]:$SINK_PORT"
		local ppid=$MT_PID
		start_sampler "$ppid" "$TMP/$p.mem" $((3 * PHASE_TIMEOUT))
	else
		mt_start "$r" "$rport" "$(seed_relay_cf "$SINK_PORT")"
		local rpid=$MT_PID
		mt_start "$p" "$pport" "$(seed_primary_cf "$rport" "$mail")"
		local ppid=$MT_PID
		start_sampler "$ppid,$rpid" "$TMP/$p.mem" $((3 * PHASE_TIMEOUT))
	fi
	log "seed/$sys: smtp-source -> primary $pport (Maildir $mail/$BENCH_USER/) + BCC -> relay $rport -> smtp-sink $SINK_PORT"
	start=$(now)
	load "$p" "$pport" "$BENCH_USER@bench.example"
	expect=$((MSGS + PROBE_N))
	if [[ $sys == postfix ]]; then
		wait_delivered "$p" "$PHASE_TIMEOUT" "$expect" "$SINK_OUT" "$mail/$BENCH_USER" "pf_queue_empty $p" "pf_queue_empty $r"
		mem_sample "$PF_MASTER,$rmaster" >>"$TMP/$p.mem"
		record_pf_mem "seed.$sys" "$TMP/$p.mem"
	else
		if [[ -n $rpid ]]; then
			wait_delivered "$p" "$PHASE_TIMEOUT" "$expect" "$SINK_OUT" "$mail/$BENCH_USER" "mt_queue_empty $p" "mt_queue_empty $r"
			mt_alive "$r" "$rpid"
			hr=$(mt_hwm "$rpid")
		else
			wait_delivered "$p" "$PHASE_TIMEOUT" "$expect" "$SINK_OUT" "$mail/$BENCH_USER" "mt_queue_empty $p"
			hr=0
		fi
		mt_alive "$p" "$ppid"
		hp=$(mt_hwm "$ppid")
		local kids
		kids=$(mt_kids "$ppid" | wc -w)
		mem_sample "$ppid${rpid:+,$rpid}" >>"$TMP/$p.mem"
		pss=$(sampler_report "$TMP/$p.mem" | awk '$1 == "SUM" { print $2 }')
		put "seed.$sys.mem" $((hp + hr))
		put "seed.$sys.memnote" "VmHWM primary $hp kB (its own $(vm "$ppid" VmHWM) + its $kids helper process(es)) + relay $hr kB (peak summed Pss sampled 1/s: $pss kB)"
	fi
	record "seed.$sys" "$start" "$END" "$expect"
	record_probe "seed.$sys"
	if [[ $sys == mailtee ]]; then
		mt_stop "$p" "$ppid"
		[[ -z $rpid ]] || mt_stop "$r" "$rpid"
	fi
}

# backlog: sink down, inject BACKLOG messages, then sink up and flush.
phase_backlog() { # phase_backlog postfix|mailtee
	local sys=$1 t name port sinkport t0 t1 t2 rc=0 q roots pss el
	t=$(tag "$sys")
	name=backlog-$t
	free_port
	port=$PORT
	free_port
	sinkport=$PORT # nothing listens here until the flush
	if [[ $sys == postfix ]]; then
		pf_start "$name" "$port" "$(relay_cf "$sinkport" bench.example)"
		roots=$PF_MASTER
	else
		mt_start "$name" "$port" "$(relay_cf "$sinkport" bench.example)"
		roots=$MT_PID
	fi
	start_sampler "$roots" "$TMP/$name.mem" $((3 * BACKLOG_TIMEOUT))
	log "backlog/$sys: injecting $BACKLOG messages ($SESS sessions, several messages per connection) into $sys on $port; sink port $sinkport down"
	t0=$(now)
	timeout "$BACKLOG_TIMEOUT" smtp-source -d -s "$SESS" -m "$BACKLOG" -l "$SIZE" \
		-f sender@bench.example -t rcpt@sink.example "127.0.0.1:$port" >"$TMP/$name.source" 2>&1 || rc=$?
	t1=$(now)
	if ((rc == 124)); then
		die "$name: smtp-source still injecting after ${BACKLOG_TIMEOUT}s"
	elif ((rc != 0)); then
		die "$name: smtp-source failed (exit $rc): $(tail -n 5 "$TMP/$name.source")"
	fi
	el=$(calc "$t1 - $t0")
	put "backlog.$sys.inject_s" "$(printf '%.1f' "$el")"
	put "backlog.$sys.inject_rate" "$(printf '%.0f' "$(calc "$BACKLOG / $el")")"
	log "backlog/$sys: injected $BACKLOG in $(get "backlog.$sys.inject_s") s = $(get "backlog.$sys.inject_rate") msg/s"
	# Every message got its 250: all must be in the queue (none can
	# have been delivered: nothing listens on the sink port). Postfix's
	# listing can count a message twice while qmgr moves it from one
	# queue directory to the next: wait for two equal counts in a row.
	local same=0 last=-1 deadline=$((SECONDS + BACKLOG_TIMEOUT))
	while ((SECONDS < deadline)); do
		q=$("${t}_queue_count" "$name")
		if ((q == BACKLOG && q == last)); then
			same=1
			break
		fi
		last=$q
		sleep 1
	done
	((same == 1)) || die "$name: queue holds $q messages after injection, not $BACKLOG"
	log "backlog/$sys: queue holds $q; starting the sink on $sinkport and flushing"
	[[ $sys == postfix ]] || mt_alive "$name" "$MT_PID"
	start_sink "$name" "$sinkport"
	t2=$(now)
	"${t}_flush" "$name" >>"$TMP/$name.flush" 2>&1 || die "$name: flush failed: $(cat "$TMP/$name.flush")"
	wait_delivered "$name" "$BACKLOG_TIMEOUT" "$BACKLOG" "$SINK_OUT" - "${t}_queue_empty $name"
	record "backlog.$sys" "$t2" "$END" "$BACKLOG"
	if [[ $sys == postfix ]]; then
		mem_sample "$PF_MASTER" >>"$TMP/$name.mem"
		record_pf_mem "backlog.$sys" "$TMP/$name.mem"
	else
		mt_alive "$name" "$MT_PID"
		mem_sample "$MT_PID" >>"$TMP/$name.mem"
		pss=$(sampler_report "$TMP/$name.mem" | awk '$1 == "SUM" { print $2 }')
		put "backlog.$sys.mem" "$(mt_hwm "$MT_PID")"
		put "backlog.$sys.memnote" "VmHWM of the process over the whole scenario, including the \`mailtee queue list\` calls that check the backlog is queued (peak Pss sampled 1/s: $pss kB)"
		mt_stop "$name" "$MT_PID"
	fi
}

# run_phase KEY FUNCTION ARGS...: runs a phase in a subshell (a failure
# ends the phase, not the run), then stops whatever it left running.
run_phase() {
	local key=$1 rc=0
	shift
	log "---- $key"
	set +e
	(
		set -e
		PHASE_FAIL=$RES/$key.fail
		# stop (and reap) what the phase started, however it ends
		trap 'release_all; wait' EXIT
		"$@"
	) &
	PHASE_PID=$!
	wait "$PHASE_PID"
	rc=$?
	set -e
	PHASE_PID=
	if ((rc != 0)) && [[ ! -s $RES/$key.fail ]]; then
		echo "phase exited with status $rc" >"$RES/$key.fail"
	fi
	release_all
	# what the logs of the instances of this phase say
	local f name
	for f in "$TMP"/*/maillog; do
		[[ -f $f ]] || continue
		name=$(basename "$(dirname "$f")")
		grep -qx "$name" "$RES/noted" 2>/dev/null && continue
		echo "$name" >>"$RES/noted"
		log_notes "$name"
	done
}

# ------------------------------------------------------------ binaries --

if [[ -n ${MAILTEE_BIN:-} ]]; then
	[[ -x $MAILTEE_BIN ]] || die "MAILTEE_BIN=$MAILTEE_BIN is not an executable file"
	MAILTEE=$MAILTEE_BIN
	log "mailtee: $MAILTEE (MAILTEE_BIN)"
else
	MAILTEE=$TMP/mailtee
	log "building mailtee"
	(cd "$REPO" && go build -o "$MAILTEE" ./cmd/mailtee) >"$TMP/build.log" 2>&1 ||
		die "go build ./cmd/mailtee failed: $(head -n 15 "$TMP/build.log")"
fi
SMTPLAT=$TMP/smtplat
(cd "$REPO" && go build -o "$SMTPLAT" ./bench/smtplat) >"$TMP/build-smtplat.log" 2>&1 ||
	die "go build ./bench/smtplat failed: $(head -n 15 "$TMP/build-smtplat.log")"

# -------------------------------------------------------------- the run --

: >"$RES/notes"
if [[ $RUN_RELAY -eq 1 ]]; then
	if [[ $RUN_PF -eq 1 ]]; then
		run_phase relay.ceiling phase_relay_ceiling
		run_phase relay.postfix phase_relay postfix
	fi
	if [[ $RUN_MT -eq 1 ]]; then run_phase relay.mailtee phase_relay mailtee; fi
fi
if [[ $RUN_SEED -eq 1 ]]; then
	if [[ $RUN_PF -eq 1 ]]; then run_phase seed.postfix phase_seed postfix; fi
	if [[ $RUN_MT -eq 1 ]]; then run_phase seed.mailtee phase_seed mailtee; fi
fi
if [[ $RUN_BACKLOG -eq 1 ]]; then
	if [[ $RUN_PF -eq 1 ]]; then run_phase backlog.postfix phase_backlog postfix; fi
	if [[ $RUN_MT -eq 1 ]]; then run_phase backlog.mailtee phase_backlog mailtee; fi
fi

# --------------------------------------------------------------- report --

mb() { # mb KB: megabytes, one decimal, or "-"
	if [[ $1 =~ ^[0-9]+$ ]]; then printf '%.1f MB' "$(calc "$1 / 1024")"; else echo -; fi
}
ratio() { # ratio A B: A/B, two decimals, or "-"
	if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && [[ $(calc "$2 > 0") == 1 ]]; then
		printf '%.2f' "$(calc "$1 / $2")"
	else
		echo -
	fi
}
# row KEY LABEL: one line of a relay/seed table.
row() {
	local k=$1
	if [[ -s $RES/$k.fail ]]; then
		printf '%-9s FAILED: %s\n' "$2" "$(head -n 1 "$RES/$k.fail")"
		return
	fi
	printf '%-9s %7s %9s %8s %7s %9s %9s %9s %11s\n' "$2" "$(get "$k.rate")" "$(get "$k.elapsed")" "$(get "$k.count")" \
		"$(ratio "$(get "$k.rate")" "$(get "${k%.*}.postfix.rate")")" \
		"$(get "$k.p50")" "$(get "$k.p99")" "$(get "$k.max")" "$(mb "$(get "$k.mem")")"
}
header() {
	printf '%-9s %7s %9s %8s %7s %9s %9s %9s %11s\n' system msg/s elapsed_s messages x_pf p50_ms p99_ms max_ms peak_mem
}
memnotes() { # memnotes SCENARIO
	local s
	for s in postfix mailtee; do
		[[ -s $RES/$1.$s.memnote ]] && echo "  $s memory: $(get "$1.$s.memnote")"
	done
	return 0
}

echo
echo "mailtee vs Postfix $(postconf -h mail_version 2>/dev/null || echo ?), 127.0.0.1, $(nproc) CPUs, $(date -u +%FT%TZ)"
echo "mailtee: $MAILTEE (modified $(date -r "$MAILTEE" '+%F %T %Z'))"
echo "load: smtp-source, $SESS sessions, messages of $SIZE bytes; latency (p50/p99/max, ms) = DATA->250 of the probe (1 extra session, bench/smtplat)"
echo "x_pf = msg/s relative to Postfix; peak_mem = mailtee: VmHWM (sum over its processes and their helpers), Postfix: peak summed Pss of all its processes"
if [[ $RUN_RELAY -eq 1 ]]; then
	echo
	echo "== relay: smtp-source -> MTA -> smtp-sink ($MSGS messages + the probe's)"
	header
	row relay.ceiling ceiling
	row relay.postfix postfix
	row relay.mailtee mailtee
	memnotes relay
fi
if [[ $RUN_SEED -eq 1 ]]; then
	echo
	echo "== seed: smtp-source -> primary (Maildir + BCC) -> relay -> smtp-sink ($MSGS messages + the probe's; each in the Maildir and at the sink)"
	header
	row seed.postfix postfix
	row seed.mailtee mailtee
	memnotes seed
fi
if [[ $RUN_BACKLOG -eq 1 ]]; then
	echo
	echo "== backlog: $BACKLOG messages injected with the sink down, then sink up + flush; drain = flush until sink has all and queue empty"
	printf '%-9s %9s %10s %9s %10s %7s %11s\n' system inject/s inject_s drain/s drain_s x_pf peak_mem
	for s in postfix mailtee; do
		if [[ -s $RES/backlog.$s.fail ]]; then
			printf '%-9s FAILED: %s\n' "$s" "$(head -n 1 "$RES/backlog.$s.fail")"
			# the injection may have been measured before the failure
			[[ -s $RES/backlog.$s.inject_rate ]] && printf '%-9s %9s %10s\n' "" "$(get "backlog.$s.inject_rate")" "$(get "backlog.$s.inject_s")"
			continue
		fi
		printf '%-9s %9s %10s %9s %10s %7s %11s\n' "$s" "$(get "backlog.$s.inject_rate")" "$(get "backlog.$s.inject_s")" \
			"$(get "backlog.$s.rate")" "$(get "backlog.$s.elapsed")" \
			"$(ratio "$(get "backlog.$s.rate")" "$(get backlog.postfix.rate)")" "$(mb "$(get "backlog.$s.mem")")"
	done
	memnotes backlog
fi
if [[ -s $RES/notes ]]; then
	echo
	echo "== logs (status counts; first warning/error lines)"
	cat "$RES/notes"
fi
echo
if [[ $RUN_RELAY -eq 1 ]]; then
	echo "RESULT relay postfix=$(get relay.postfix.rate) mailtee=$(get relay.mailtee.rate) ratio=$(ratio "$(get relay.mailtee.rate)" "$(get relay.postfix.rate)") ceiling=$(get relay.ceiling.rate)" \
		"postfix_p50_ms=$(get relay.postfix.p50) postfix_p99_ms=$(get relay.postfix.p99) mailtee_p50_ms=$(get relay.mailtee.p50) mailtee_p99_ms=$(get relay.mailtee.p99)" \
		"postfix_mem_kb=$(get relay.postfix.mem) mailtee_mem_kb=$(get relay.mailtee.mem)"
fi
if [[ $RUN_SEED -eq 1 ]]; then
	echo "RESULT seed postfix=$(get seed.postfix.rate) mailtee=$(get seed.mailtee.rate) ratio=$(ratio "$(get seed.mailtee.rate)" "$(get seed.postfix.rate)")" \
		"postfix_p50_ms=$(get seed.postfix.p50) postfix_p99_ms=$(get seed.postfix.p99) mailtee_p50_ms=$(get seed.mailtee.p50) mailtee_p99_ms=$(get seed.mailtee.p99)" \
		"postfix_mem_kb=$(get seed.postfix.mem) mailtee_mem_kb=$(get seed.mailtee.mem)"
fi
if [[ $RUN_BACKLOG -eq 1 ]]; then
	echo "RESULT backlog postfix=$(get backlog.postfix.rate) mailtee=$(get backlog.mailtee.rate) ratio=$(ratio "$(get backlog.mailtee.rate)" "$(get backlog.postfix.rate)")" \
		"postfix_inject=$(get backlog.postfix.inject_rate) mailtee_inject=$(get backlog.mailtee.inject_rate) n=$BACKLOG" \
		"postfix_mem_kb=$(get backlog.postfix.mem) mailtee_mem_kb=$(get backlog.mailtee.mem)"
fi
FAILED=$(find "$RES" -name '*.fail' -size +0 | wc -l)
if ((FAILED > 0)); then
	log "$FAILED phase(s) failed"
	exit 2
fi
