# Interrupted while a throwaway device exists: the probe holds each device 20 s.
for sig in INT TERM HUP; do
    VDUSE_PROBE_HOLD_MS=20000 vduse-probe --json >/dev/null 2>"/results/int-$sig.err" &
    pid=$!
    wait_for 60 sh -c 'ls /dev/vduse | grep -q vduse-probe-'
    ls /dev/vduse | result "int-$sig.during"
    kill -"$sig" $pid
    wait $pid
    echo $? >"/results/int-$sig.rc"
    ls /dev/vduse | result "int-$sig.after"
done
# Interrupted at arbitrary moments.
i=0
while [ $i -lt 25 ]; do
    vduse-probe >/dev/null 2>&1 &
    pid=$!
    usleep $((i * 4000))
    kill -INT $pid 2>/dev/null
    wait $pid
    echo "$i $?" >>/results/random.rcs
    i=$((i + 1))
done
ls /dev/vduse | result random.after
ls /sys/class/vduse | result random.class
