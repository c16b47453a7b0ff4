#!/bin/sh
# Builds the Debian package from a copy of the tree and checks it:
#   - dpkg-buildpackage -us -uc -b (the package build runs the unit tests),
#     and dpkg-source -b for the source package,
#   - lintian on both: any error fails (warnings are printed),
#   - the .deb's contents: binaries, unit, sysusers/tmpfiles, manual pages,
#     the example settings as 0644 conffiles, no secret, a unit that is
#     enabled but never started by the maintainer scripts,
#   - the shipped settings are refused by imperai-snowd -n (78, naming
#     servicenow.instance) until their placeholders are filled in.
# With IMPERAI_PKG_INSTALL_TEST=1 (the default when CI=true) and as root on
# Debian, it also installs the .deb on this machine with apt-get, checks the
# user, the directories, the enabled unit and the configuration, runs the
# daemon once and imperai-snowctl status and list as an unprivileged member
# of the group imperai-snow (secrets closed to it), reinstalls
# it over a test secret and an edited conffile, removes and purges it, and
# checks that nothing but the system user is left.  It refuses to do so when
# imperai-snow is already installed or has left files behind.
# Exit status: 0 passed, 77 skipped, 1 failed.
#   IMPERAI_PKG_KEEP=1   keep the temporary directory
#   JOBS=N               parallel build jobs (default 2)
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
jobs=${JOBS:-2}
pkg=imperai-snow

say() { echo "test_deb: $*"; }
fail() { say "FAIL: $*"; exit 1; }
skip() { say "SKIP: $*"; exit 77; }

install_test=${IMPERAI_PKG_INSTALL_TEST:-}
if [ -z "$install_test" ]; then
	if [ "${CI:-}" = true ]; then install_test=1; else install_test=0; fi
fi

[ -f /etc/debian_version ] || skip "not a Debian system"
missing=
for t in dpkg-buildpackage dpkg-deb dpkg-checkbuilddeps dh lintian; do
	command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
[ -z "$missing" ] || skip "missing:$missing (sh tests/deps.sh test installs them)"
(cd "$top" && dpkg-checkbuilddeps) || skip "build dependencies missing (sh tests/deps.sh test installs them)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/imperai-pkg.XXXXXX") || fail "mktemp"
installed_here=0
monitor_added=0
cleanup() {
	[ "$monitor_added" = 1 ] && userdel imperai-snow-test-monitor >/dev/null 2>&1
	if [ "$installed_here" = 1 ]; then
		say "cleaning up: purging $pkg"
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$pkg" >/dev/null 2>&1
	fi
	if [ "${IMPERAI_PKG_KEEP:-0}" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# The tree as it is (tracked and new files, not what .gitignore excludes),
# without any build output.
src=$tmp/$pkg
mkdir -p "$src"
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$top" ls-files --cached --others --exclude-standard |
		while IFS= read -r f; do [ -e "$top/$f" ] && printf '%s\n' "$f"; done |
		(cd "$top" && tar -cf - -T -) | tar -xf - -C "$src" || fail "copying the tree"
else
	(cd "$top" && tar -cf - --exclude=./_build --exclude=./.git .) |
		tar -xf - -C "$src" || fail "copying the tree"
fi

# The source package first, from the pristine copy: lintian checks it too.
(cd "$tmp" && dpkg-source -b "$pkg") >"$tmp/source.log" 2>&1 ||
	{ cat "$tmp/source.log"; fail "dpkg-source -b"; }
set -- "$tmp"/${pkg}_*.dsc
[ -f "$1" ] || fail "no .dsc file"
dsc=$1

say "building the package (dpkg-buildpackage -us -uc -b, log: build.log)"
start=$(date +%s)
if ! (cd "$src" && dpkg-buildpackage -us -uc -b -J"$jobs") >"$tmp/build.log" 2>&1; then
	tail -n 80 "$tmp/build.log"
	fail "dpkg-buildpackage failed"
fi
say "package built in $(($(date +%s) - start)) s"

set -- "$tmp"/${pkg}_*.deb
[ $# -eq 1 ] && [ -f "$1" ] || fail "expected one ${pkg}_*.deb, found: $*"
deb=$1
set -- "$tmp"/${pkg}_*.changes
[ -f "$1" ] || fail "no .changes file"
changes=$1
say "built $(basename "$deb")"

# lintian exits non-zero on errors (--fail-on error); warnings are shown.
say "lintian $(basename "$changes") $(basename "$dsc")"
lintian --fail-on error "$changes" "$dsc" >"$tmp/lintian.log" 2>&1
lstatus=$?
sed 's/^/  lintian: /' "$tmp/lintian.log"
[ $lstatus -eq 0 ] || fail "lintian reports errors (status $lstatus)"
grep -q '^E: ' "$tmp/lintian.log" && fail "lintian reports errors"

# Contents.
dpkg-deb -c "$deb" >"$tmp/contents" || fail "dpkg-deb -c"
has() {
	grep -q " \./$1\$" "$tmp/contents" || fail "the package lacks /$1"
}
for f in usr/sbin/imperai-snowd usr/bin/imperai-snowctl \
	lib/systemd/system/imperai-snowd.service \
	etc/imperai-snow/imperai-snowd.conf etc/imperai-snow/flows.yaml \
	usr/share/man/man8/imperai-snowd.8.gz usr/share/man/man1/imperai-snowctl.1.gz \
	usr/share/man/man5/imperai-snowd.conf.5.gz usr/share/man/man5/imperai-snow-flows.5.gz \
	usr/share/man/man7/imperai-snow-api.7.gz usr/share/bash-completion/completions/imperai-snowctl \
	usr/share/doc/imperai-snow/copyright usr/share/doc/imperai-snow/changelog.gz; do
	has "$f"
done
grep -q ' \./usr/lib/sysusers\.d/[^/]*\.conf$' "$tmp/contents" || fail "no sysusers.d file"
grep -q ' \./usr/lib/tmpfiles\.d/[^/]*\.conf$' "$tmp/contents" || fail "no tmpfiles.d file"
for f in imperai-snowd.conf flows.yaml; do
	grep -q "^-rw-r--r-- root/root .* \./etc/imperai-snow/$f\$" "$tmp/contents" ||
		fail "/etc/imperai-snow/$f is not a 0644 root:root file"
done
# No secret is ever shipped: nothing in the credentials directory, no key files.
if grep -E ' \./(etc/imperai-snow/credentials|var/lib/imperai-snow)(/|$)| \./.*(\.key|\.pem|password|secret)$' \
	"$tmp/contents"; then
	fail "the package ships a credential or state file (above)"
fi

ctl=$tmp/control
dpkg-deb -e "$deb" "$ctl" || fail "dpkg-deb -e"
printf '/etc/imperai-snow/flows.yaml\n/etc/imperai-snow/imperai-snowd.conf\n' >"$tmp/want-conffiles"
sort "$ctl/conffiles" | cmp -s - "$tmp/want-conffiles" ||
	fail "conffiles are: $(tr '\n' ' ' <"$ctl/conffiles")"
grep -q 'systemd-sysusers' "$ctl/postinst" || fail "postinst does not create the user"
grep -q 'systemd-tmpfiles' "$ctl/postinst" || fail "postinst does not create the directories"
grep -q "deb-systemd-helper enable 'imperai-snowd.service'" "$ctl/postinst" ||
	fail "postinst does not enable the unit"
if grep -E 'deb-systemd-invoke (start|restart) ' "$ctl/postinst"; then
	fail "postinst starts the unit (above): it must wait until configured"
fi
grep -q 'deb-systemd-invoke stop imperai-snowd.service' "$ctl/prerm" ||
	fail "prerm does not stop the unit on removal"
grep -q 'deb-systemd-helper purge' "$ctl/postrm" || fail "postrm does not purge the unit's state"
grep -q '^Depends:.*systemd' "$ctl/control" || fail "no dependency on systemd (sysusers)"
grep -q '^Depends:.*procps' "$ctl/control" || fail "no dependency on procps (the unit's ExecReload=/bin/kill)"

# Extracted: the unit names the installed paths, and the binaries accept the
# shipped settings.
root=$tmp/root
dpkg-deb -x "$deb" "$root" || fail "dpkg-deb -x"
unit=$root/lib/systemd/system/imperai-snowd.service
grep -q '^ExecStart=/usr/sbin/imperai-snowd .*-c /etc/imperai-snow/imperai-snowd.conf$' "$unit" ||
	fail "the unit's ExecStart does not run /usr/sbin/imperai-snowd with /etc/imperai-snow"
grep -q '@[a-z]*@' "$unit" && fail "the unit has unsubstituted @variables@"
version=$(dpkg-deb -f "$deb" Version)
for b in usr/sbin/imperai-snowd usr/bin/imperai-snowctl; do
	"$root/$b" -V >"$tmp/version" 2>&1 || fail "$b -V: $(cat "$tmp/version")"
	grep -q " $version\$" "$tmp/version" || fail "$b -V says '$(cat "$tmp/version")', the package is $version"
done
# The shipped settings are placeholders until the admin fills them in: -n
# (the unit's ExecStartPre=) refuses them with 78 naming the key.
shipped_refused() { # what
	"$@" >"$tmp/check" 2>&1
	st=$?
	[ $st -eq 78 ] || fail "$what: imperai-snowd -n exits $st on the shipped settings, not 78: $(cat "$tmp/check")"
	grep -q 'servicenow\.instance: "https://YOUR-INSTANCE\.service-now\.com" is a placeholder' "$tmp/check" ||
		fail "$what: imperai-snowd -n does not name servicenow.instance: $(cat "$tmp/check")"
}
what="extracted" shipped_refused "$root/usr/sbin/imperai-snowd" -n -c "$root/etc/imperai-snow/imperai-snowd.conf"
# Filled in (as tests/settings-from-shipped.sh does for the demo), they pass.
sh "$top/tests/settings-from-shipped.sh" "$root/etc/imperai-snow/imperai-snowd.conf" \
	https://acme.service-now.com https://api.imper.ai /var/lib/imperai-snow >"$root/etc/imperai-snow/filled.conf" ||
	fail "settings-from-shipped.sh"
"$root/usr/sbin/imperai-snowd" -n -c "$root/etc/imperai-snow/filled.conf" >"$tmp/check" 2>&1 ||
	fail "imperai-snowd -n rejects the shipped settings once filled in: $(cat "$tmp/check")"
say "package contents, control files and shipped settings: passed"

[ "$install_test" = 1 ] || { say "install test not requested (IMPERAI_PKG_INSTALL_TEST=1 runs it)"; say "passed"; exit 0; }
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	say "install test skipped: needs root and apt-get"; say "passed"; exit 0
fi
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv 'not-installed'; then
	say "install test skipped: $pkg is already known to dpkg here; it is left alone"; say "passed"; exit 0
fi
if [ -e /etc/imperai-snow ] || [ -e /var/lib/imperai-snow ]; then
	say "install test skipped: /etc/imperai-snow or /var/lib/imperai-snow exists; it is left alone"
	say "passed"; exit 0
fi

export DEBIAN_FRONTEND=noninteractive
say "install test: apt-get install $(basename "$deb")"
installed_here=1
apt-get install -y -q --no-install-recommends "$deb" >"$tmp/install.log" 2>&1 ||
	{ tail -n 40 "$tmp/install.log"; fail "apt-get install"; }
dpkg-query -W -f='${Status}' "$pkg" | grep -q 'install ok installed' || fail "not installed"
getent passwd imperai-snow >/dev/null || fail "no imperai-snow user after install"
[ "$(stat -c '%a %U %G' /etc/imperai-snow/credentials)" = "700 root root" ] ||
	fail "/etc/imperai-snow/credentials is $(stat -c '%a %U %G' /etc/imperai-snow/credentials)"
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	[ "$(stat -c "%a %U %G" /var/lib/imperai-snow 2>&1)" = "750 imperai-snow imperai-snow" ] ||
		fail "/var/lib/imperai-snow is $(stat -c '%a %U %G' /var/lib/imperai-snow 2>&1)"
fi
[ -L /etc/systemd/system/multi-user.target.wants/imperai-snowd.service ] || fail "the unit is not enabled"
if [ -d /run/systemd/system ]; then
	systemctl is-active --quiet imperai-snowd && fail "the unit was started by the installation"
fi
# As the administrator checks it (README), then as the unit's ExecStartPre=
# runs it: as the service user, with the secrets (none yet) in a
# $CREDENTIALS_DIRECTORY of its own.  Both refuse the placeholders.
what="installed" shipped_refused /usr/sbin/imperai-snowd -n -c /etc/imperai-snow/imperai-snowd.conf
creds=$tmp/creds
mkdir -m 0700 "$creds" && chown imperai-snow: "$creds" && chmod 0755 "$tmp" || fail "making $creds"
what="as imperai-snow" shipped_refused env CREDENTIALS_DIRECTORY="$creds" \
	setpriv --reuid=imperai-snow --regid=imperai-snow --clear-groups \
	/usr/sbin/imperai-snowd -n --strict -c /etc/imperai-snow/imperai-snowd.conf
grep -q '^ExecStartPre=/usr/sbin/imperai-snowd -n --strict ' /lib/systemd/system/imperai-snowd.service ||
	fail "the unit does not check the settings in ExecStartPre="

# A monitoring user in the group imperai-snow (README, imperai-snowctl(1))
# runs status and list without root and without the secrets, whose
# directory stays 0700 root.
mon=imperai-snow-test-monitor
useradd --system --no-create-home --shell /usr/sbin/nologin --groups imperai-snow "$mon" ||
	fail "useradd $mon"
monitor_added=1
as_mon() { setpriv --reuid="$mon" --regid=nogroup --init-groups /usr/bin/imperai-snowctl "$@"; }
as_mon status >"$tmp/mon" 2>&1
st=$?
[ $st -eq 2 ] && grep -q 'not running: it has never run' "$tmp/mon" ||
	fail "status by $mon on a fresh install exits $st, not 2: $(cat "$tmp/mon")"
# The daemon runs once as imperai-snow, on the installed settings filled in
# (services unreachable on loopback: the polls fail, it runs on).
sh "$top/tests/settings-from-shipped.sh" /etc/imperai-snow/imperai-snowd.conf \
	http://127.0.0.1:9 http://127.0.0.1:9 /var/lib/imperai-snow >"$tmp/run.conf" &&
	cp /etc/imperai-snow/flows.yaml "$tmp/flows.yaml" && chmod 0644 "$tmp/run.conf" "$tmp/flows.yaml" ||
	fail "writing $tmp/run.conf"
printf 'test-only\n' >"$creds/servicenow-password" && printf 'test-only\n' >"$creds/imperai-api-key" &&
	chown imperai-snow: "$creds"/* && chmod 0600 "$creds"/* || fail "writing test secrets"
env CREDENTIALS_DIRECTORY="$creds" setpriv --reuid=imperai-snow --regid=imperai-snow --clear-groups \
	/usr/sbin/imperai-snowd -f -c "$tmp/run.conf" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
i=0
until as_mon -c "$tmp/run.conf" status >"$tmp/mon" 2>&1; st=$?; [ $st -eq 0 ] || [ $st -eq 3 ]; do
	i=$((i + 1))
	[ $i -lt 150 ] && kill -0 "$daemon_pid" 2>/dev/null ||
		fail "status by $mon never saw the daemon run: $(cat "$tmp/mon") -- daemon: $(tail -n 5 "$tmp/daemon.log")"
	sleep 0.2
done
grep -q "^imperai-snowd: running, pid $daemon_pid" "$tmp/mon" || fail "status by $mon: $(cat "$tmp/mon")"
as_mon -c "$tmp/run.conf" list >"$tmp/mon" 2>&1 || fail "list by $mon: $(cat "$tmp/mon")"
grep -q '^TICKET' "$tmp/mon" || grep -q 'no verification' "$tmp/mon" || fail "list by $mon printed: $(cat "$tmp/mon")"
as_mon -c "$tmp/run.conf" check-config --probe >"$tmp/mon" 2>&1
st=$?
[ $st -eq 78 ] && grep -q 'run it as root' "$tmp/mon" ||
	fail "check-config --probe by $mon exits $st without saying it needs root: $(cat "$tmp/mon")"
[ "$(stat -c '%a %U' /etc/imperai-snow/credentials)" = "700 root" ] || fail "the credentials directory changed"
kill "$daemon_pid" && wait "$daemon_pid" || fail "the test daemon did not stop cleanly: $(tail -n 5 "$tmp/daemon.log")"
rm -f "$creds"/*
say "install test: shipped settings refused until configured; $mon (group imperai-snow) runs status and list: passed"
if command -v systemd-analyze >/dev/null 2>&1; then
	systemd-analyze verify /lib/systemd/system/imperai-snowd.service >"$tmp/verify" 2>&1 ||
		{ cat "$tmp/verify"; fail "systemd-analyze verify"; }
fi

# A reinstall keeps the secrets and an edited conffile.
printf 'test-only-not-a-secret\n' >/etc/imperai-snow/credentials/imperai-api-key
chmod 0600 /etc/imperai-snow/credentials/imperai-api-key
echo '# edited by test_deb.sh' >>/etc/imperai-snow/flows.yaml
apt-get install -y -q --reinstall -o Dpkg::Options::=--force-confold "$deb" >"$tmp/reinstall.log" 2>&1 ||
	{ tail -n 40 "$tmp/reinstall.log"; fail "apt-get install --reinstall"; }
[ "$(cat /etc/imperai-snow/credentials/imperai-api-key)" = test-only-not-a-secret ] ||
	fail "the reinstall changed a secret"
tail -n 1 /etc/imperai-snow/flows.yaml | grep -q 'edited by test_deb.sh' || fail "the reinstall overwrote an edited conffile"

# remove keeps settings, secrets and state; purge removes them.
apt-get remove -y -q "$pkg" >"$tmp/remove.log" 2>&1 || { tail -n 40 "$tmp/remove.log"; fail "apt-get remove"; }
[ ! -e /usr/sbin/imperai-snowd ] || fail "/usr/sbin/imperai-snowd is still there after remove"
[ -f /etc/imperai-snow/imperai-snowd.conf ] || fail "remove deleted the settings"
[ -f /etc/imperai-snow/credentials/imperai-api-key ] || fail "remove deleted the secrets"
apt-get purge -y -q "$pkg" >"$tmp/purge.log" 2>&1 || { tail -n 40 "$tmp/purge.log"; fail "apt-get purge"; }
installed_here=0
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv 'not-installed'; then
	fail "dpkg still knows $pkg after purge: $(dpkg-query -W -f='${Status}' "$pkg")"
fi
for p in /etc/imperai-snow /var/lib/imperai-snow /lib/systemd/system/imperai-snowd.service \
	/etc/systemd/system/multi-user.target.wants/imperai-snowd.service; do
	[ ! -e "$p" ] && [ ! -L "$p" ] || fail "$p is left after purge"
done
say "install test: install, reinstall, remove, purge: passed (the imperai-snow system user stays, as Debian keeps system users)"
say "passed"
