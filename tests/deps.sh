#!/bin/sh
# Installs what imperai-snow needs on Debian 12, and only what is missing.
#   tests/deps.sh build   compilers, autotools, libraries
#   tests/deps.sh demo    build + python3
#   tests/deps.sh test    demo + cmocka, mandoc, clang (fuzzing), openssl,
#                         valgrind, chromium and node (browser test),
#                         debhelper and lintian (tests/pkg/test_deb.sh)
set -eu
profile=${1:-test}

pkgs="build-essential autoconf automake libtool pkg-config make
libcurl4-openssl-dev libssl-dev libjson-c-dev liblmdb-dev libconfig-dev libyaml-dev
libsystemd-dev libcmocka-dev ca-certificates"
case $profile in
build) ;;
demo) pkgs="$pkgs python3 lmdb-utils" ;;
test) pkgs="$pkgs python3 lmdb-utils mandoc clang libclang-rt-14-dev openssl valgrind
	chromium git systemd dpkg-dev debhelper lintian" ;;
*) echo "usage: $0 build|demo|test" >&2; exit 64 ;;
esac

missing=
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		missing="$missing $p"
	fi
done
# node and npm: any installation will do (Debian's, or one already present).
if [ "$profile" = test ]; then
	command -v node >/dev/null 2>&1 || missing="$missing nodejs"
	command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi

[ -z "$missing" ] && exit 0
echo "imperai-snow: installing missing packages:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "imperai-snow: run as root, or install:$missing" >&2
		exit 77
	fi
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
