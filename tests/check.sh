#!/bin/sh
# The whole test suite, from a fresh clone on Debian 12:
#   installs what is missing, builds with -Werror under AddressSanitizer and
#   UndefinedBehaviorSanitizer, runs every test (unit, simulators,
#   integration, end to end in a browser, short crash/fault campaigns,
#   fuzz smoke), then `make distcheck`.
# .ci/run runs exactly this.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=${JOBS:-2}

sh tests/deps.sh test
./bootstrap >/dev/null 2>&1 || ./bootstrap

b=_build/check
mkdir -p "$b"
(cd "$b" && "$top/configure" --enable-werror --enable-sanitizers --enable-systemd=auto -q)
# ASan: report leaks too; UBSan: stop on the first error.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
make -C "$b" -j"$jobs" >/dev/null
status=0
make -C "$b" -j"$jobs" check || status=$?
if [ $status -ne 0 ]; then
	for f in $(find "$b/tests" -name '*.log' 2>/dev/null); do
		if grep -q '^FAIL\|^ERROR' "${f%.log}.trs" 2>/dev/null; then
			echo "=== $f"; tail -n 60 "$f"
		fi
	done
	exit $status
fi
command -v clang >/dev/null 2>&1 && make -C "$b" fuzz-smoke

# Packaging sanity: the tarball builds and its tests pass.
d=_build/dist
mkdir -p "$d"
(cd "$d" && "$top/configure" -q)
make -C "$d" -j"$jobs" distcheck >/dev/null
echo "distcheck: passed"

# The Debian package builds, is lintian-clean, and (in CI) installs and purges.
sh tests/pkg/test_deb.sh || [ $? -eq 77 ]
