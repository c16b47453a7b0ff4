#!/bin/sh
# The demo: installs what is missing, builds, and runs the daemon against the
# two simulators on loopback with settings generated from the shipped ones
# and the shipped policy.
# Creates three tickets and prints the URLs to open.  Ctrl-C stops it all.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
SNOW_PORT=${SNOW_PORT:-18080}
IMPERAI_PORT=${IMPERAI_PORT:-18090}

sh tests/deps.sh demo
[ -x configure ] || ./bootstrap >/dev/null
b=_build/demo
mkdir -p "$b"
[ -f "$b/Makefile" ] || (cd "$b" && "$top/configure" -q)
make -C "$b" -j2 >/dev/null

work=$(mktemp -d /tmp/imperai-snow-demo.XXXXXX)
pids=
cleanup() {
	trap - EXIT INT TERM
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "demo stopped; its files are in $work"
}
trap cleanup EXIT INT TERM

# The shipped settings with their placeholders filled in (the simulators, a
# private state directory), and the simulators' credentials handed over the
# way systemd would (CREDENTIALS_DIRECTORY).
mkdir -p "$work/etc" "$work/credentials" "$work/state"
sh tests/settings-from-shipped.sh etc/imperai-snowd.conf "http://127.0.0.1:$SNOW_PORT" \
    "http://127.0.0.1:$IMPERAI_PORT" "$work/state" > "$work/etc/imperai-snowd.conf"
cp etc/flows.yaml "$work/etc/flows.yaml"
umask 077
printf 'integration-secret\n' > "$work/credentials/servicenow-password"
printf 'sim-api-key\n' > "$work/credentials/imperai-api-key"
umask 022
export CREDENTIALS_DIRECTORY="$work/credentials"

start_sim() { # name script port
	python3 "tests/sim/$2" --port "$3" --data "$work/$1" > "$work/$1.log" 2>&1 &
	pids="$pids $!"
	i=0
	until grep -q "listening on" "$work/$1.log" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 100 ] || ! kill -0 "$!" 2>/dev/null; then
			echo "demo: the $1 simulator did not start:" >&2
			cat "$work/$1.log" >&2
			exit 69
		fi
		sleep 0.1
	done
}
start_sim snow snow_sim.py "$SNOW_PORT"
start_sim imperai imperai_sim.py "$IMPERAI_PORT"

"$b/imperai-snowd" -n -c "$work/etc/imperai-snowd.conf"
"$b/imperai-snowd" -f -c "$work/etc/imperai-snowd.conf" 2> "$work/imperai-snowd.log" &
pids="$pids $!"

python3 tests/sim/demo_tickets.py "http://127.0.0.1:$SNOW_PORT"

cat <<MSG

imperai-snow demo is running (daemon log: $work/imperai-snowd.log)
  ServiceNow agent view:  http://127.0.0.1:$SNOW_PORT/
  imper.ai outbox:        http://127.0.0.1:$IMPERAI_PORT/outbox
  imper.ai console:       http://127.0.0.1:$IMPERAI_PORT/verifications
  operator CLI:           $b/imperai-snowctl -c $work/etc/imperai-snowd.conf list

Open the Password Reset ticket (INC0010001) in the agent view: within one poll
(10 s as shipped) its imper.ai Verification field shows "imper.ai - Send
Verification link".  Click it, enter a private email and your name, Send;
follow the link in the imper.ai outbox, answer, reset the password, and
reload the ticket: it shows the outcome and closes itself.  To have a
headless browser walk it: SNOW_PORT=$SNOW_PORT IMPERAI_PORT=$IMPERAI_PORT python3 tests/browser/test_browser.py --demo
(screenshots in tests/browser/artifacts/demo/).  Ctrl-C stops everything.
MSG
tail -f "$work/imperai-snowd.log" &
pids="$pids $!"
wait
