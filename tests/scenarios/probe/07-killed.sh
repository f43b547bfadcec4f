# SIGKILL cannot be caught: the next probe removes what the killed one left.
VDUSE_PROBE_HOLD_MS=20000 vduse-probe >/dev/null 2>&1 &
pid=$!
wait_for 60 sh -c 'ls /dev/vduse | grep -q vduse-probe-'
kill -KILL $pid
wait $pid
ls /dev/vduse | result killed.during
capture after-kill vduse-probe --json
ls /dev/vduse | result killed.after
