#!/bin/sh
# Settings for the demo and the tests, generated from the shipped
# etc/imperai-snowd.conf so that the shipped file stays tested: its
# placeholders are replaced and the state directory moved.
#   settings-from-shipped.sh SHIPPED SNOW_URL IMPERAI_URL STATE_DIR [USER] > FILE
# Fails (exit 1) when a placeholder is left, i.e. the shipped file gained
# one this script does not know.
set -eu
[ $# -ge 4 ] || { echo "usage: $0 SHIPPED SNOW_URL IMPERAI_URL STATE_DIR [USER]" >&2; exit 64; }
out=$(sed -e "s|\"https://YOUR-INSTANCE\.service-now\.com\"|\"$2\"|" \
	-e "s|\"https://YOUR-IMPERAI-API\.imper\.ai\"|\"$3\"|" \
	-e "s|\"YOUR-INTEGRATION-USER\"|\"${5:-imperai.integration}\"|" \
	-e "s|^\([[:space:]]*directory[[:space:]]*=\).*|\1 \"$4\";|" "$1")
if printf '%s\n' "$out" | grep -v '^[[:space:]]*#' | grep -q 'YOUR-'; then
	echo "$0: a placeholder of $1 is left: teach this script its value" >&2
	exit 1
fi
printf '%s\n' "$out"
