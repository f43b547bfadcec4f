# shellcheck shell=dash
# A soak test behind BENCHMARKS.md ("Small bounce buffers"): vduse-blk with a small VDUSE
# bounce buffer under three concurrent fio jobs (1M sequential writes at depth 4, 4k
# random writes at depth 16, mixed 4k-512k random I/O at depth 8) in 8 s rounds for
# DURATION seconds. A round still running 60 s after its end is a stall: the block
# layer's state, each queue's ring state as the server sees it (SIGUSR1), the server's
# and fio's kernel stacks and dmesg are printed, then fio is killed and the soak ends,
# so that the guest finishes and /results is kept. Runs in a guest booted by tests/vm-run:
#
#   tests/vm-run --release --kernel 7.3 --memory 2048 --cpus 2 --host fio --host ip --host chrt \
#       --modules vduse,virtio_vdpa,virtio_blk --file bench/blk-soak-guest.sh:/x.sh \
#       --results /tmp/soak --timeout 1600 --console -- env DURATION=1320 BOUNCE=8M \
#       sh /x.sh 2>/tmp/soak.console
#
# With SERVER=qsd (and --host qemu-storage-daemon --host vdpa) the disk is served by
# qemu-storage-daemon instead, with the same bounce buffer.
#
# Output: /results/soak.txt and the console (one line per round, "STALL" sections,
# "SOAK-END ..." last). The console has it even when the guest cannot finish: a stall
# can leave I/O that never completes, and then the harness's timeout ends the boot.
exec >/dev/console 2>&1
say() { echo "$*" | tee -a /results/soak.txt; }
# spawn, stop; and the installed programs win over busybox applets.
# shellcheck source=/dev/null
. /lib/vduse-test/helpers.sh
BOUNCE=${BOUNCE:-8M}
# vduse-blk, or qsd for qemu-storage-daemon (BOUNCE in whole MiB then).
SERVER=${SERVER:-vduse-blk}
DURATION=${DURATION:-900}
for m in vduse virtio_vdpa virtio_blk; do modprobe $m || exit 1; done
mount -t debugfs none /sys/kernel/debug 2>/dev/null
mkdir -p /srv && mount -t tmpfs -o size=700M none /srv
truncate -s 512M /srv/disk.img
if [ "$SERVER" = qsd ]; then
    # The peer, for comparison: qemu-storage-daemon's vduse-blk export, its bounce buffer
    # sized through sysfs before `vdpa dev add` attaches it.
    spawn srv qemu-storage-daemon \
        --blockdev driver=file,node-name=file0,filename=/srv/disk.img,cache.direct=off \
        --export type=vduse-blk,id=exp0,node-name=file0,name=soak0,writable=on,num-queues=1,queue-size=256
    wait_for 30 test -e /sys/class/vduse/soak0/bounce_size || { say "SOAK-END no qsd device"; exit 1; }
    echo $(($(echo "$BOUNCE" | tr -d M) << 20)) >/sys/class/vduse/soak0/bounce_size
    vdpa dev add name soak0 mgmtdev vduse || { say "SOAK-END vdpa dev add failed"; exit 1; }
else
    spawn srv vduse-blk --name soak0 --backing /srv/disk.img --bounce-size "$BOUNCE" --serial soak0
fi
dev=
tries=0
while [ -z "$dev" ] && [ $tries -lt 200 ]; do
    dev=$(ls /sys/bus/vdpa/devices/soak0/virtio*/block/ 2>/dev/null)
    tries=$((tries + 1))
    sleep 0.3
done
[ -n "$dev" ] || { say "SOAK-END no disk appeared"; exit 1; }
say "device $dev served by $SERVER, bounce buffer $(cat /sys/class/vduse/soak0/bounce_size) bytes"
pid=$(cat /run/vduse-test/srv.pid)

# A watchdog above every normal task (SCHED_FIFO): the whole guest has been seen to stop
# printing with both vCPUs busy, which a starved shell cannot report. When no round has
# ended for 90 s it shows what runs: the busiest tasks, the kernel stacks of every running
# task and of every CPU (sysrq l), memory, and the server's ring state.
cut -d. -f1 /proc/uptime >/tmp/heartbeat
chrt -f 50 sh -c '
    while sleep 15; do
        now=$(cut -d. -f1 /proc/uptime)
        [ $((now - $(cat /tmp/heartbeat))) -gt 90 ] || continue
        echo "=== WATCHDOG at $now s: no round ended for 90 s"
        top -b -n 1 | head -n 20
        for t in /proc/[0-9]*/task/[0-9]*; do
            [ "$(awk "{ print \$3 }" $t/stat 2>/dev/null)" = R ] || continue
            echo "-- running: ${t#/proc/} $(cat $t/comm)"
            cat $t/stack
        done
        grep -E "MemFree|^Cached|Shmem:|Dirty|Writeback:" /proc/meminfo
        [ '"$SERVER"' = qsd ] || kill -USR1 '"$pid"'
        echo l >/proc/sysrq-trigger
        sleep 5
        grep -E "status|queue [0-9]+:" /results/srv.err | tail -n 6
        echo "$now" >/tmp/heartbeat
    done' >/dev/console 2>&1 &

# report ROUND: what the block layer, the server and fio show while a round is stuck.
report() {
    echo "=== STALL in round $1 at $(cut -d' ' -f1 /proc/uptime) s"
    echo "inflight: $(cat /sys/block/"$dev"/inflight)"
    # The server logs its rings to its stderr (srv.err) on SIGUSR1.
    [ "$SERVER" = qsd ] || kill -USR1 "$pid"
    sleep 2
    echo "-- the server's ring state"
    grep -E "status|queue [0-9]+:" /results/srv.err | tail -n 8
    # What the guest does meanwhile, for 3 s: whether blk-mq retries the stuck request,
    # what the driver answers and whether the bounce mapping fails (kretprobes).
    t=/sys/kernel/tracing
    mount -t tracefs nodev $t 2>/dev/null
    echo 'r:qrq virtio_queue_rq ret=$retval' >$t/kprobe_events
    echo 'r:mapret vduse_domain_map_page ret=$retval' >>$t/kprobe_events
    echo 'r:addret virtqueue_add_sgs ret=$retval' >>$t/kprobe_events
    echo 'p:delayrun blk_mq_delay_run_hw_queue msecs=%si' >>$t/kprobe_events
    echo 'p:runq blk_mq_run_hw_queue async=%si' >>$t/kprobe_events
    echo >$t/trace
    for e in qrq mapret addret delayrun runq; do echo 1 >$t/events/kprobes/$e/enable; done
    sleep 3
    for e in qrq mapret addret delayrun runq; do echo 0 >$t/events/kprobes/$e/enable; done
    echo "-- kprobe hits in 3 s"
    for e in qrq mapret addret delayrun runq; do
        echo "$e $(grep -c " $e:" $t/trace)"
    done
    echo "-- the last of them"
    grep -v '^#' $t/trace | tail -n 12
    for h in /sys/kernel/debug/block/"$dev"/hctx*; do
        for f in state busy dispatch dispatch_busy flags; do
            echo "-- ${h##*/}/$f"
            cat "$h/$f"
        done
    done
    for t in /proc/"$pid"/task/*; do
        echo "-- thread ${t##*/} $(cat "$t"/comm) $(awk '{ print $3 }' "$t"/stat) wchan=$(cat "$t"/wchan)"
        cat "$t"/stack
    done
    for p in $(pgrep -x fio); do
        echo "-- fio $p $(awk '{ print $3 }' /proc/"$p"/stat) wchan=$(cat /proc/"$p"/wchan)"
        cat /proc/"$p"/stack
    done
    dmesg | tail -n 20
}

# job NAME FIO-ARGS...: one 8 s fio job on the disk, terse output in /tmp/NAME.out.
job() {
    local name=$1
    shift
    fio --name="$name" --filename=/dev/"$dev" --ioengine=libaio --direct=1 --time_based \
        --runtime=8 --output-format=terse "$@" >/tmp/"$name".out 2>&1
}

end=$(($(cut -d. -f1 /proc/uptime) + DURATION))
round=0
stalls=0
while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do
    round=$((round + 1))
    job w --rw=write --bs=1M --iodepth=4 &
    a=$!
    job r --rw=randwrite --bs=4k --iodepth=16 --offset=256M &
    b=$!
    job m --rw=randrw --bsrange=4k-512k --iodepth=8 --offset=384M &
    c=$!
    n=0
    while kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null || kill -0 $c 2>/dev/null; do
        sleep 1
        n=$((n + 1))
        [ $n = 60 ] && report $round 2>&1 | tee -a /results/soak.txt && stalls=$((stalls + 1))
        [ $n = 61 ] && kill -9 $a $b $c
        if [ $n = 120 ]; then
            # fio waits in the kernel for I/O that never completes: no point going on.
            say "SOAK-END rounds=$round stalls=$stalls stuck: fio cannot be killed"
            exit 1
        fi
    done
    wait $a $b $c
    cut -d. -f1 /proc/uptime >/tmp/heartbeat
    if [ $stalls -gt 0 ]; then
        say "SOAK-END rounds=$round stalls=$stalls (ended at the first stall, fio killed)"
        exit 1
    fi
    # Terse v3 fields: 48 is the write bandwidth in KiB/s, 49 the write IOPS.
    say "round $round: 1M writes $(cut -d';' -f48 /tmp/w.out) KiB/s," \
        "4k writes $(cut -d';' -f49 /tmp/r.out) IOPS, errors $(cut -d';' -f5 /tmp/w.out)/$(cut -d';' -f5 /tmp/r.out)/$(cut -d';' -f5 /tmp/m.out)"
done
# A stuck request would keep the server's SIGTERM waiting forever: bounded here.
[ "$SERVER" = qsd ] && vdpa dev del soak0
kill -TERM "$pid"
wait_for 60 sh -c "! kill -0 $pid 2>/dev/null" || say "the server did not stop within 60 s"
say "SOAK-END rounds=$round stalls=$stalls"
