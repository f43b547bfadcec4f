# spawn, stop, reap and wait_for; the scenario's exit code reaches the host.
spawn server sh -c 'echo started; trap "echo bye; exit 0" TERM; while :; do sleep 0.1; done'
(sleep 0.3; touch /tmp/flag) &
capture wait-flag wait_for 10 test -e /tmp/flag
capture wait-never wait_for 1 test -e /nonexistent
stop server
spawn quick sh -c 'echo quick >&2; exit 4'
reap quick
exit 7
