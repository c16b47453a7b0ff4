#!/bin/sh
# make valgrind: the black-box tests with imperai-snowd under valgrind.
#
#   sh tests/valgrind.sh SRCDIR BUILDDIR [TEST.py ...]
#
# Configures its own build in BUILDDIR without sanitizers (valgrind and
# ASan do not mix), builds the binaries, runs the tests (paths under tests/;
# default: integration/test_daemon.py, test_ctl.py, test_hostile.py -- its
# error paths are where leaks hide -- and the end-to-end integration/
# test_e2e.py and browser/test_browser.py when present) with
# IMPERAI_DAEMON_WRAPPER set to valgrind, then reads every valgrind log:
# any error or any definitely or indirectly lost byte fails.  A run that
# ended without valgrind's summary was SIGKILLed by its test (the crash
# tests of test_e2e.py do it on purpose): it is counted, not judged.  Exit 77
# (skipped) when valgrind is not installed.
set -eu

src=$(cd "$1" && pwd)
build=$2
shift 2
command -v valgrind >/dev/null 2>&1 || { echo "valgrind is not installed: skipped"; exit 77; }

mkdir -p "$build"
build=$(cd "$build" && pwd)
logs=$build/valgrind-logs
if [ ! -f "$build/Makefile" ]; then
	(cd "$build" && "$src/configure" -q --disable-sanitizers CFLAGS="-O1 -g")
fi
make -C "$build" -j2 imperai-snowd imperai-snowctl tests/integration/audit_tamper >/dev/null

if [ $# -eq 0 ]; then
	set -- integration/test_daemon.py integration/test_ctl.py integration/test_hostile.py
	# The end-to-end scenarios, when this tree has them.
	[ -f "$src/tests/integration/test_e2e.py" ] && set -- "$@" integration/test_e2e.py
	[ -f "$src/tests/browser/test_browser.py" ] && set -- "$@" browser/test_browser.py
fi
rm -rf "$logs"
mkdir -p "$logs"
export top_srcdir="$src" top_builddir="$build" PYTHONDONTWRITEBYTECODE=1
export IMPERAI_DAEMON_WRAPPER="valgrind --leak-check=full \
--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-fds=no \
--log-file=$logs/vg.%p.log"
export IMPERAI_TEST_TIMEOUT_SCALE=${IMPERAI_TEST_TIMEOUT_SCALE:-6}

status=0
for t in "$@"; do
	case $t in */*) ;; *) t=integration/$t ;; esac
	echo "== $t under valgrind"
	rc=0
	python3 "$src/tests/$t" || rc=$?
	case $rc in
	0) ;;
	77) echo "== $t skipped itself" ;;
	*) status=1 ;;
	esac
done

runs=0 bad=0 cut=0
for f in "$logs"/vg.*.log; do
	[ -e "$f" ] || continue
	runs=$((runs + 1))
	summary=$(grep -h "ERROR SUMMARY:" "$f" | tail -1)
	case "$summary" in
	*"ERROR SUMMARY: 0 errors"*)
		;;
	"")
		# SIGKILLed before valgrind could check (the crash tests do it on
		# purpose): counted, shown, not judged.
		cut=$((cut + 1))
		;;
	*)
		echo "== $f"
		cat "$f"
		bad=$((bad + 1))
		;;
	esac
done
echo "valgrind: $runs daemon runs, $((runs - cut)) checked at exit, $bad with errors or leaks;" \
	"$cut killed by their test (SIGKILL: crash tests), not checked"
grep -h "total heap usage" "$logs"/vg.*.log | sed 's/^==[0-9]*== */  /' | sort | uniq -c | sort -rn | head -3
[ "$runs" -gt 0 ] || { echo "valgrind: no daemon ran under valgrind"; exit 1; }
[ "$bad" -eq 0 ] || exit 1
exit $status
