#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine as root or on a
# developer's machine that already has what it needs:
#   - Debian's postfix package, for the Postfix-equivalence tests (the
#     system instance is never started: it is installed with
#     "No configuration" and only its postmap/postconf tools are used);
#   - nmap, whose smtp-open-relay script probes the SMTP server (test/security);
#   - libnss-extrausers, an NSS source for the tests of users known only
#     to NSS (not in /etc/passwd);
#   - postgresql, mariadb-server, sqlite3 and postfix-pgsql, -mysql,
#     -sqlite, for the SQL tables and the fleet (servers never started
#     as system services: the tests start private ones);
#   - chromium, the headless browser the dashboard's tests drive
#     (internal/dashboard/browsertest; MAILTEE_NO_BROWSER=1 skips them),
#     prometheus, apache2-utils and argon2 (see below);
#   - Go modules;
# then vet and every test, including each fuzz target's committed corpus.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v postmap >/dev/null 2>&1 || ! command -v postconf >/dev/null 2>&1 || ! command -v nmap >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		echo "test.sh: installing Debian's postfix package (tools only, not started) and nmap"
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix postfix-pcre nmap >/dev/null
	else
		echo "test.sh: postfix or nmap is missing and we are not root; the tests that need them will be skipped" >&2
	fi
fi
if command -v postmap >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	# Postfix's tools refuse to run without a main.cf.
	[ -f /etc/postfix/main.cf ] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
	dpkg -s postfix-pcre >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix-pcre >/dev/null || true
	# An NSS source for users not in /etc/passwd (internal/users/userstest):
	# installed here, once, rather than by tests running side by side.
	dpkg -s libnss-extrausers >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnss-extrausers >/dev/null || true
fi
if [ "$(id -u)" = 0 ]; then
	# The fleet's and the SQL tables' tests start private PostgreSQL and
	# MariaDB servers in temporary directories on loopback high ports
	# (internal/testdb), and hold mailtee's pgsql/mysql/sqlite tables
	# against Postfix's own (postfix-pgsql, -mysql, -sqlite). The system
	# instances must not start: policy-rc.d says no while installing.
	db=""
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || db="$db postgresql"
	command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || db="$db mariadb-server"
	command -v sqlite3 >/dev/null 2>&1 || db="$db sqlite3"
	for p in postfix-pgsql postfix-mysql postfix-sqlite; do
		dpkg -s $p >/dev/null 2>&1 || db="$db $p"
	done
	if [ -n "$db" ]; then
		echo "test.sh: installing$db (servers not started)"
		made_policy=""
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			made_policy=1
		fi
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $db >/dev/null
		[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
	fi
	# chromium: the dashboard's browser tests; prometheus: a real
	# Prometheus runs a public Grafana dashboard's queries against
	# /metrics; apache2-utils and argon2: real password hashes for the
	# dashboard's login (htpasswd, argon2).
	missing=""
	command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
	command -v htpasswd >/dev/null 2>&1 || missing="$missing apache2-utils"
	command -v argon2 >/dev/null 2>&1 || missing="$missing argon2"
	browser=""
	command -v chromium >/dev/null 2>&1 || [ "${MAILTEE_NO_BROWSER:-}" = 1 ] || browser=chromium
	if [ -n "$missing$browser" ]; then
		echo "test.sh: installing$missing $browser"
		apt-get update -qq
		[ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
		[ -z "$browser" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	fi
fi

go mod download
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "test.sh: gofmt needed on:" $unformatted >&2
	exit 1
fi
go vet ./...

# A short fuzz run of the parsers that face the outside (each target's
# committed corpus also runs with the tests below): 20000 new inputs each.
# A count, not a duration: Go 1.26's fuzzing engine can fail a timed run
# at its deadline with no failing input (golang/go#75804, fixed in 1.27).
# MAILTEE_FUZZTIME=500000x fuzzes longer; 0 skips it.
fuzztime=${MAILTEE_FUZZTIME:-20000x}
if [ "$fuzztime" != 0 ] && [ $# -eq 0 ]; then
	for target in internal/smtpd:FuzzSession internal/address:FuzzParse internal/config:FuzzParse \
		internal/maps:FuzzTextTable internal/maps:FuzzAliasTable internal/maps:FuzzRegexpTable \
		internal/maps:FuzzCIDRTable internal/retrans:FuzzTranslate internal/rewrite:FuzzHeader internal/queue:FuzzReadJournal internal/header:FuzzReader \
		internal/maildrop:FuzzDecode internal/mailcopy:FuzzCopy internal/command:FuzzFilter internal/command:FuzzSplitStatus \
		internal/users:FuzzParsePasswdLine internal/mastercf:FuzzParse internal/master:FuzzMasterFindings \
		internal/config:FuzzCheckMasterNames internal/pfqueue:FuzzRead internal/maildrop:FuzzHeaderAddresses \
		cmd/mailtee:FuzzParseSendmail internal/maildrop:FuzzServeSMTP internal/smtpd:FuzzCmdWatcher internal/maps:FuzzInline \
		internal/config:FuzzExpand internal/maps:FuzzInlineSpec internal/smtpd:FuzzBodyReader \
		internal/smtpd:FuzzStartTLSStream internal/ratelimit:FuzzParseWindows internal/ratelimit:FuzzLimiter \
		internal/provider:FuzzClassify internal/provider:FuzzSite internal/standin:FuzzParseStorm \
		internal/ledger:FuzzRemoteID internal/report:FuzzParseTime internal/ledgerhttp:FuzzQuery internal/ledgerhttp:FuzzClientReply \
		cmd/mailtee:FuzzReportArgs internal/web:FuzzParsePasswords internal/web:FuzzParseNetworks internal/web:FuzzParsePeers \
		internal/web:FuzzReadListen internal/dashboard:FuzzAdvice internal/dashboard:FuzzReportJSON internal/dashboard:FuzzQueueByDestination \
		internal/metrics:FuzzParsePromQL internal/pflog:FuzzLine internal/migration:FuzzSettingsRecord \
		internal/preflight:FuzzClassify internal/preflight:FuzzParseRate internal/preflight:FuzzSession \
		internal/migrate:FuzzParsePattern internal/migrate:FuzzParsePasswd internal/migrate:FuzzParseShells \
		internal/srs:FuzzReverse internal/srs:FuzzParseReport internal/report:FuzzPerMailbox internal/route:FuzzCopyRoute \
		internal/sqltable:FuzzParseCF internal/sqltable:FuzzExpandQuery internal/socketmap:FuzzNetstring \
		internal/drain:FuzzDecode internal/ledger:FuzzRebind internal/ledger:FuzzSpillRecord internal/dsn:FuzzBuild internal/maillog:FuzzOneLine; do
		pkg=${target%%:*} name=${target##*:}
		n=$((${n:-0} + 1))
		echo "fuzz $pkg $name ($fuzztime)"
		go test "./$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" >/tmp/mailtee-fuzz.log 2>&1 || {
			cat /tmp/mailtee-fuzz.log
			echo "test.sh: fuzzing $pkg $name found a failure (the input is in $pkg/testdata/fuzz/$name)" >&2
			exit 1
		}
	done
	echo "fuzz: $n targets, no failure"
fi

# Every test, last, so that its summary closes the output. test/e2e
# takes 6 to 7 minutes on a quiet machine: go test's default of 10 per
# package is too close; the bound still stops a test that hangs.
go test -count=1 -timeout 25m ./... "$@"
