#!/bin/sh
# install.sh: install mailtee in place of Postfix's commands.
#
#   dist/install.sh [--force] [--no-build] [--no-links] [--no-unit]
#
# Environment (defaults in brackets):
#   DESTDIR      staging root, prepended to every path [empty: /]
#   PREFIX       [/usr/local]: the binary goes to $PREFIX/sbin/mailtee
#   GROUP        setgid_group of main.cf [postdrop], made if missing
#   CONFIG_DIR   configuration directory the unit passes to serve [/etc/postfix]
#   QUEUE_DIR    [/var/spool/mailtee]   DATA_DIR [/var/lib/mailtee]
#   UNIT_DIR     [/lib/systemd/system]
#   VERSION      [git describe, else "devel"]: what mailtee version prints
#   BIN          a mailtee binary already built (with --no-build)
#   GO           [go]
#
# What it does:
#   - builds mailtee with its version (-ldflags -X main.version=...);
#   - installs it as $PREFIX/sbin/mailtee, owner root, group $GROUP, mode
#     2755: setgid, as Postfix's postdrop, so that every user's sendmail
#     can drop a message into maildrop; mailtee keeps the group for that
#     write alone and gives it up at once for every other command;
#   - links sendmail, mailq, newaliases, postqueue and postsuper to it
#     (/usr/sbin/sendmail, /usr/bin/mailq, /usr/bin/newaliases,
#     /usr/sbin/postqueue, /usr/sbin/postsuper): mailtee behaves as the
#     program its name says. A file there that is not already a link to
#     mailtee (Postfix's own) is left alone, and the install fails,
#     unless --force, which moves it aside with dpkg-divert (on the live
#     system) or to NAME.pre-mailtee (under DESTDIR);
#   - makes $QUEUE_DIR (0711: users' sendmail passes through to
#     maildrop) and $DATA_DIR (0700), owned by root; mailtee serve makes
#     the rest at its first start;
#   - installs the systemd unit mailtee.service (not enabled).
set -eu

force=no build=yes links=yes unit=yes
for a in "$@"; do
	case $a in
	--force) force=yes ;;
	--no-build) build=no ;;
	--no-links) links=no ;;
	--no-unit) unit=no ;;
	-h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "install.sh: unknown option $a (see --help)" >&2; exit 64 ;;
	esac
done

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
GROUP=${GROUP:-postdrop}
CONFIG_DIR=${CONFIG_DIR:-/etc/postfix}
QUEUE_DIR=${QUEUE_DIR:-/var/spool/mailtee}
DATA_DIR=${DATA_DIR:-/var/lib/mailtee}
UNIT_DIR=${UNIT_DIR:-/lib/systemd/system}
GO=${GO:-go}
SBINDIR=$PREFIX/sbin
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

die() { echo "install.sh: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
	die "run as root: the binary must be owned by root with group $GROUP and the setgid bit"
fi

# The group of the setgid drop (main.cf's setgid_group, postdrop as
# with Postfix, which Debian's postfix package has made already).
if ! getent group "$GROUP" >/dev/null; then
	groupadd --system "$GROUP" || die "cannot make group $GROUP"
	echo "install.sh: made group $GROUP"
fi

if [ -z "${VERSION:-}" ]; then
	VERSION=$(git -C "$top" describe --tags --always --dirty 2>/dev/null || echo devel)
fi

mkdir -p "$DESTDIR$SBINDIR"
if [ "$build" = yes ]; then
	tmp="$DESTDIR$SBINDIR/.mailtee.new"
	(cd "$top" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-X main.version=$VERSION" -o "$tmp" ./cmd/mailtee) ||
		die "go build failed"
else
	[ -n "${BIN:-}" ] && [ -f "$BIN" ] || die "--no-build needs BIN=path of a built mailtee"
	tmp="$DESTDIR$SBINDIR/.mailtee.new"
	cp "$BIN" "$tmp"
fi
# chown before chmod: chown clears the setgid bit.
chown "root:$GROUP" "$tmp"
chmod 2755 "$tmp"
mv -f "$tmp" "$DESTDIR$SBINDIR/mailtee"
echo "install.sh: installed $DESTDIR$SBINDIR/mailtee (root:$GROUP 2755, version $VERSION)"

# link NAME PATH: PATH becomes a symbolic link to the binary.
link() {
	path=$DESTDIR$2
	target=$SBINDIR/mailtee
	mkdir -p "$(dirname "$path")"
	if [ -L "$path" ] && [ "$(readlink "$path")" = "$target" ]; then
		return 0
	fi
	if [ -e "$path" ] || [ -L "$path" ]; then
		owner=""
		if [ -z "$DESTDIR" ] && command -v dpkg-query >/dev/null; then
			owner=$(dpkg -S "$2" 2>/dev/null | cut -d: -f1 || true)
		fi
		if [ "$force" != yes ]; then
			echo "install.sh: $path exists${owner:+ (package $owner)}; not replaced." >&2
			echo "  To let mailtee take $2 over, either rerun with --force, or:" >&2
			echo "    dpkg-divert --local --rename --divert $2.postfix --add $2 && ln -s $target $2" >&2
			echo "  or register both with update-alternatives, e.g." >&2
			echo "    update-alternatives --install $2 $1 $target 50" >&2
			echo "  (undo: rm $2 && dpkg-divert --rename --remove $2)" >&2
			return 1
		fi
		if [ -z "$DESTDIR" ] && [ -n "$owner" ] && command -v dpkg-divert >/dev/null; then
			# The package keeps its file, renamed, across upgrades.
			dpkg-divert --local --rename --divert "$2.postfix" --add "$2" >/dev/null
			echo "install.sh: $2 of package $owner diverted to $2.postfix"
		else
			mv -f "$path" "$path.pre-mailtee"
			echo "install.sh: $path moved to $path.pre-mailtee"
		fi
	fi
	ln -sf "$target" "$path"
	echo "install.sh: $path -> $target"
}

status=0
if [ "$links" = yes ]; then
	link sendmail /usr/sbin/sendmail || status=1
	link mailq /usr/bin/mailq || status=1
	link newaliases /usr/bin/newaliases || status=1
	link postqueue /usr/sbin/postqueue || status=1
	link postsuper /usr/sbin/postsuper || status=1
fi

# The spool and data directories, root's; serve makes maildrop (1730)
# and public/ (0710) with group $GROUP inside at its start.
mkdir -p "$DESTDIR$QUEUE_DIR" "$DESTDIR$DATA_DIR"
chown root:root "$DESTDIR$QUEUE_DIR" "$DESTDIR$DATA_DIR"
chmod 0711 "$DESTDIR$QUEUE_DIR"
chmod 0700 "$DESTDIR$DATA_DIR"

if [ "$unit" = yes ]; then
	mkdir -p "$DESTDIR$UNIT_DIR"
	sed -e "s|@SBINDIR@|$SBINDIR|g" -e "s|@CONFIG_DIR@|$CONFIG_DIR|g" "$here/mailtee.service" >"$DESTDIR$UNIT_DIR/mailtee.service"
	chmod 0644 "$DESTDIR$UNIT_DIR/mailtee.service"
	echo "install.sh: installed $DESTDIR$UNIT_DIR/mailtee.service"
	if [ -z "$DESTDIR" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		echo "install.sh: start it with: systemctl disable --now postfix; systemctl enable --now mailtee"
	fi
fi

if [ "$GROUP" != postdrop ]; then
	echo "install.sh: set setgid_group = $GROUP in $CONFIG_DIR/main.cf: serve gives maildrop that group"
fi

if [ "$status" != 0 ]; then
	die "some links were not made (see above); the rest is installed"
fi
