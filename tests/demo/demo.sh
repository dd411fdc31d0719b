#!/usr/bin/env bash
# tests/demo/demo.sh BUILD_DIR: s3mond at work in two minutes, for a newcomer.
#
# Starts the Dataverse simulator (tests/dvsim) with the realistic fixture on a
# free loopback port, writes a configuration and a client secret in a temp
# directory, runs `s3mond --once`, then the daemon for a few cycles; inserts a
# new mailbox alert through the simulator's admin API and shows the finding
# appear (and its JSON form); stops everything and removes what it made.
# `./run demo` installs the packages, builds, and runs this. Non-interactive:
# S3MOND_DEMO_PAUSE=N pauses N seconds between steps (default 0).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
s3mond=$build/s3mond
dvsim=$src/tests/dvsim/dvsim.py
fixture=$src/tests/fixtures/realistic.json
pause=${S3MOND_DEMO_PAUSE:-0}
interval=2

for tool in python3 curl jq; do
	command -v "$tool" >/dev/null || { echo "demo: $tool is missing (./run deps installs it)" >&2; exit 1; }
done
[ -x "$s3mond" ] || { echo "demo: $s3mond is missing: run ./run build first" >&2; exit 1; }

if [ -t 1 ]; then bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'; else bold= dim= off=; fi
step=0
say() { printf '%s\n' "$@"; }
title() {
	step=$((step + 1))
	[ "$step" -gt 1 ] && sleep "$pause"
	printf '\n%s== %d. %s ==%s\n' "$bold" "$step" "$1" "$off"
}
indent() { sed 's/^/    /'; }
run() { printf '%s$ %s%s\n' "$dim" "$*" "$off"; }

tmp=$(mktemp -d /tmp/s3mond-demo.XXXXXX)
dvsim_pid= daemon_pid=
cleanup() {
	local rc=$?
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	if [ -n "$dvsim_pid" ]; then
		curl -s -m 5 -X POST "$base/_admin/shutdown" >/dev/null 2>&1 || kill "$dvsim_pid" 2>/dev/null
		wait "$dvsim_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "${bold}s3mond demo${off}: a real-time workflow or synchronous plug-in that throws when"
say "server-side sync creates an email makes Dataverse log 'UnknownIncomingEmailIntegrationError"
say "-2147220956' against the mailbox. s3mond finds those alerts and names the code behind them."
say "Here it talks to a Dataverse simulator instead of Microsoft's cloud. Working in $tmp"

# ---------------------------------------------------------------------------
title "Start the Dataverse simulator with a realistic environment"
python3 "$dvsim" --scenario "$fixture" --port 0 --port-file "$tmp/port" --quiet &
dvsim_pid=$!
for _ in $(seq 300); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { echo "demo: the simulator did not start" >&2; exit 1; }
port=$(cat "$tmp/port")
base=http://127.0.0.1:$port
say "The simulator (pid $dvsim_pid) serves environment 'prod' at $base/prod: 7 mailboxes,"
say "16 workflows and 8 plug-in steps, most of them decoys (background, draft, other entity...)."
say "Its admin API ($base/_admin/...) lets this demo add rows while s3mond runs."

# ---------------------------------------------------------------------------
title "Write a configuration and a client secret"
env_json=$(jq -c '.environments[0]' "$fixture")
printf '%s' "$(jq -r .client_secret <<<"$env_json")" >"$tmp/prod.secret"
chmod 600 "$tmp/prod.secret"
cat >"$tmp/s3mond.conf" <<EOF
[s3mond]
interval = ${interval}s
state_directory = $tmp/state

[environment prod]
url = $base/prod
authority = $base
tenant = $(jq -r .tenant <<<"$env_json")
client_id = $(jq -r .client_id <<<"$env_json")
client_secret_file = prod.secret
EOF
indent <"$tmp/s3mond.conf"
say "The secret file must not be readable by others (mode 0600), or s3mond refuses it."
say "Against real Dataverse, url is https://<org>.crm.dynamics.com and the authority defaults"
say "to Microsoft Entra ID (see man s3mond.conf)."

# ---------------------------------------------------------------------------
title "Check once, like a monitoring plugin: s3mond --once"
run s3mond --once -c "$tmp/s3mond.conf"
set +e
"$s3mond" --once -c "$tmp/s3mond.conf" >"$tmp/once.out" 2>"$tmp/once.err"
rc=$?
set -e
indent <"$tmp/once.out"
say "Exit status $rc: 0 OK, 1 WARNING (only suspected/unexplained), 2 CRITICAL (confirmed), 3 UNKNOWN."
say "The first line is what Nagios/Icinga show (with performance data after '|'); one line per"
say "finding follows. 'confirmed' means a culprit failed within 15 minutes of the alert;"
say "'suspected' that synchronous code is registered but left no failure trace."

# ---------------------------------------------------------------------------
title "Run the daemon (output on stderr here; journald under systemd)"
run s3mond -c "$tmp/s3mond.conf" -o stderr
"$s3mond" -c "$tmp/s3mond.conf" -o stderr 2>"$tmp/daemon.log" &
daemon_pid=$!
shown=0
show_log() { # print the daemon's new lines
	local n
	n=$(wc -l <"$tmp/daemon.log")
	if [ "$n" -gt "$shown" ]; then
		tail -n "+$((shown + 1))" "$tmp/daemon.log" | head -n "$((n - shown))" | sed 's/^/    | /'
		shown=$n
	fi
}
wait_log() { # wait_log PATTERN SECONDS
	local deadline=$((SECONDS + $2))
	while ! grep -q -- "$1" "$tmp/daemon.log"; do
		kill -0 "$daemon_pid" 2>/dev/null || { show_log; echo "demo: the daemon exited" >&2; exit 1; }
		[ "$SECONDS" -ge "$deadline" ] && { show_log; echo "demo: timed out waiting for: $1" >&2; exit 1; }
		sleep 0.2
	done
}
for _ in $(seq 150); do [ "$(grep -c '^prod: mailbox' "$tmp/daemon.log")" -ge 5 ] && break; sleep 0.2; done
show_log
say "The first cycle reported the same five findings, and saved them in $tmp/state:"
say "they will not be reported again, not after a restart, not after a crash."
curl -s -X POST "$base/_admin/stats/reset" >/dev/null
sleep $((2 * interval + 1))
show_log
requests=$(curl -s "$base/_admin/stats" | jq '.environments.prod.requests // 0')
tracelogs=$(curl -s "$base/_admin/stats" | jq '.environments.prod.sets.tracelogs.requests // 0')
say "Quiet: in the last $((2 * interval + 1)) s it polled $tracelogs times with $requests requests in all"
say "(new alerts since the last poll, and mailboxes that changed): 2 requests per idle cycle."

# ---------------------------------------------------------------------------
title "A workflow starts failing: a new alert arrives"
mailbox=a9000000-0000-4000-8000-0000000000d0
alert=b9000000-0000-4000-8000-0000000000d0
curl -s -X POST "$base/_admin/prod/mailboxes" -H 'Content-Type: application/json' -d "{
  \"mailboxid\": \"$mailbox\", \"name\": \"Returns\", \"emailaddress\": \"returns@contoso.com\",
  \"incomingemaildeliverymethod\": 2, \"incomingemailstatus\": 2, \"statecode\": 0,
  \"lastsuccessfulsynccompletedon\": \"now-1h\"}" >/dev/null
# 'Set email category' (its activation row) fails on the incoming email...
curl -s -X POST "$base/_admin/prod/processsessions" -H 'Content-Type: application/json' -d '{
  "_processid_value": "c1000000-0000-4000-8000-000000000002", "name": "Set email category",
  "statecode": 1, "statuscode": 6, "errorcode": -2147220891,
  "comments": "Set email category: step 2 '\''Update email'\'' failed: The category field must be set.",
  "startedon": "now-2s", "completedon": "now-1s", "createdon": "now-2s"}' >/dev/null
# ...and Dataverse logs the alert against the mailbox.
inserted=$SECONDS
curl -s -X POST "$base/_admin/prod/tracelogs" -H 'Content-Type: application/json' -d "{
  \"tracelogid\": \"$alert\", \"level\": 2, \"regardingobjecttypecode\": \"mailbox\",
  \"_regardingobjectid_value\": \"$mailbox\",
  \"text\": \"An unknown error occurred while receiving email through the mailbox \\\"Returns\\\". The system will try to receive email again later.\\r\\nEmail Server Error Code: Exchange server returned UnknownIncomingEmailIntegrationError -2147220956 exception.\"}" >/dev/null
say "Inserted: mailbox 'Returns', a failed session of workflow 'Set email category' 1 s ago,"
say "and the mailbox alert (tracelogs row $alert). Waiting for the next poll..."
wait_log 'mailbox "Returns"' 60
show_log
say "The daemon reported it within $((SECONDS - inserted)) s (the poll interval is ${interval} s):"
say "culprit 'Set email category' with its failed session as evidence, then the other"
say "synchronous code that could also be responsible."

title "The same finding as JSON (output = json, or journald's S3MOND_* fields)"
run "s3mond --once --json --since 10m -c ... | jq 'select(.alert.id == \"$alert\")'"
"$s3mond" --once --json --since 10m -c "$tmp/s3mond.conf" 2>/dev/null |
	jq "select(.alert.id == \"$alert\")" | indent || true

# ---------------------------------------------------------------------------
title "Stop cleanly (SIGTERM: state saved, exit 0, within 2 s)"
kill -TERM "$daemon_pid"
set +e
wait "$daemon_pid"
rc=$?
set -e
daemon_pid=
show_log
say "The daemon exited with status $rc. State files:"
ls -l "$tmp/state" | tail -n +2 | indent
curl -s -X POST "$base/_admin/shutdown" >/dev/null || true
wait "$dvsim_pid" 2>/dev/null || true
dvsim_pid=
say "Simulator stopped; $tmp is removed on exit."

# ---------------------------------------------------------------------------
title "Where to look next"
cat <<EOF
  man -l $build/man/s3mond.8        modes, outputs and journal fields, exit codes, signals
  man -l $build/man/s3mond.conf.5   every configuration key; the privileges s3mond needs
  conf/s3mond.conf                  the commented example configuration
  systemd/s3mond.service            the unit: Type=notify, DynamicUser, LoadCredential
  tests/dvsim/README.md             the simulator: fixtures, faults, admin API
  ./run test                        every test suite (plain and sanitizer builds)
  Under systemd, findings land in the journal:
      journalctl -t s3mond -o verbose S3MOND_VERDICT=confirmed
EOF
