# shellcheck shell=dash
# The guest side of bench/blk: runs inside ONE boot of a Debian kernel (busybox sh, as
# root) and runs the same fio jobs against each target in turn:
#
#   vduse-blk       our server (release build), a file on the guest's tmpfs, writeback
#   qsd             qemu-storage-daemon's vduse-blk export of the same file
#   brd             the kernel's RAM disk /dev/ram0: the ceiling
#   vduse-blk-none  vduse-blk with cache none (O_DIRECT) over /dev/ram0 (random reads only)
#   vduse-blk-none-sync  the same with `io-engine: sync` (one request at a time per queue),
#                   when this build has io-engines
#   nbd-unix        vduse-blk with `backend: nbd` over qemu-nbd's export of the same file,
#                   on a Unix socket (when NBD=1 and the build has the NBD backend)
#   nbd-tcp         the same over TCP on the guest's loopback
#   kernel-nbd      the kernel's own NBD client (nbd.ko, /dev/nbd0) on qemu-nbd's export of
#                   the same file (`qemu-nbd --connect`): the peer of nbd-unix
#
# Both servers get 1 queue of 256 entries and attach through virtio_vdpa (-> /dev/vdX).
#
#   sh /bench/blk-guest.sh RUNTIME RAMP SIZE_MIB [IO_ENGINE [BOUNCE_SIZE [BUSY_POLL_US [NBD]]]]
#
# IO_ENGINE sets vduse-blk's `io-engine` for the first two vduse-blk targets (default: the
# build's default); BOUNCE_SIZE its `--bounce-size` for every vduse-blk target (default:
# the kernel's); BUSY_POLL_US its `--busy-poll-us` for them (default: 0, off).
#
# Results (sent back to the host by the harness, from /results):
#   fio/TARGET.JOB.json   fio's JSON summary of each job
#   runs.tsv              per job: fio exit code, wall time, server CPU ticks, guest CPU
#                         ticks (busy, total), the server's memory sampled mid-job (kB;
#                         Bounce: its resident pages of the VDUSE bounce buffer),
#                         the server's busiest thread and its CPU ticks, start and end
#                         (guest uptime, s)
#   threads/TARGET.tsv    the server's threads and their CPU ticks when the target ends
#   memory-end.tsv        the server's memory then (kB)
#   status.tsv            TARGET ok | TARGET failed: why
#   env                   kernel, CPUs, memory, program versions
#   vduse-blk.config      vduse-blk --print-config for the file target
#   SERVER.out/err/rc     what each server printed, and its exit code
# Progress goes to stderr. The exit code is 0 when every target ran and cleaned up.

RUNTIME=${1:-10}
RAMP=${2:-2}
SIZE_MIB=${3:-512}
IO_ENGINE=${4:-}
BOUNCE_SIZE=${5:-}
BUSY_POLL_US=${6:-0}
NBD=${7:-0}

# spawn, stop, wait_for; and the installed programs win over busybox applets.
# shellcheck source=/dev/null
. /lib/vduse-test/helpers.sh

R=/results
mkdir -p $R/fio $R/threads
printf 'target\tjob\tfio_rc\twall_s\tserver_ticks\tbusy_ticks\ttotal_ticks\tVmRSS\tRssAnon\tRssFile\tRssShmem\tVmHWM\tBounce\ttop_thread\ttop_thread_ticks\tstart_s\tend_s\n' >$R/runs.tsv
: >$R/status.tsv
: >$R/memory-end.tsv
FAILED=0

# The jobs: NAME:RW:BS:IODEPTH.
JOBS="randread-4k-qd1:randread:4k:1 randread-4k-qd16:randread:4k:16
randwrite-4k-qd1:randwrite:4k:1 randwrite-4k-qd16:randwrite:4k:16
read-1m-qd4:read:1M:4 write-1m-qd4:write:1M:4"

log() { echo "bench: $*" >&2; }

# ok TARGET / failed TARGET WHY: the target's verdict.
ok() { printf '%s\tok\n' "$1" >>$R/status.tsv; log "$1: done"; }
failed() {
    printf '%s\tfailed: %s\n' "$1" "$2" >>$R/status.tsv
    log "$1: FAILED: $2"
    FAILED=1
}

# blockdev NAME: the /dev/vdX the virtio driver made of vdpa device NAME.
blockdev() {
    for b in /sys/bus/vdpa/devices/"$1"/virtio*/block/*; do
        [ -e "$b" ] && echo "/dev/${b##*/}" && return 0
    done
    return 1
}
# shellcheck disable=SC2317 # called through wait_for
has_blockdev() { blockdev "$1" >/dev/null; }
# up PID CMD...: CMD succeeds, or process PID has ended (for wait_for: no waiting for a
# server that died).
# shellcheck disable=SC2317 # called through wait_for
up() {
    local pid=$1
    shift
    "$@" || ! kill -0 "$pid" 2>/dev/null
}
# last_words TARGET: the last line the server printed on stderr.
last_words() { tail -n1 $R/"$1".err 2>/dev/null; }
no_vdpa_dev() { ! [ -e /sys/bus/vdpa/devices/"$1" ]; }
no_vduse_dev() { ! [ -e /dev/vduse/"$1" ]; }

# ticks PID: user + system CPU time of a process (all its threads), in clock ticks.
ticks() {
    [ -n "$1" ] || { echo 0; return; }
    sed 's/^.*) //' /proc/"$1"/stat | awk '{ print $12 + $13 }'
}
# guest_ticks: busy and total CPU ticks of the whole guest.
# (user, nice, system, idle, iowait, irq, softirq, steal; guest time is inside user).
guest_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
# memory PID: VmRSS RssAnon RssFile RssShmem VmHWM and the resident part of its mappings
# of the VDUSE bounce buffer (anon_inode:[vduse-domain], the kernel's memory that both
# servers map and that counts in their RssFile), in kB ("- - - - - -" without a server).
memory() {
    if [ -n "$1" ] && [ -e /proc/"$1"/status ]; then
        {
            awk '/^(VmRSS|RssAnon|RssFile|RssShmem|VmHWM):/ { v[$1] = $2 }
                 END { printf "%s %s %s %s %s ", v["VmRSS:"], v["RssAnon:"], v["RssFile:"], v["RssShmem:"], v["VmHWM:"] }' /proc/"$1"/status
            awk '/^[0-9a-f]+-[0-9a-f]+ / { domain = ($6 ~ /vduse-domain/) }
                 domain && /^Rss:/ { kb += $2 } END { print kb + 0 }' /proc/"$1"/smaps
        }
    else
        echo "- - - - - -"
    fi
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# thread_ticks PID: "TID COMM TICKS" per thread of the process.
thread_ticks() {
    [ -n "$1" ] || return 0
    for t in /proc/"$1"/task/*; do
        echo "${t##*/} $(tr ' ' '_' <"$t/comm") $(ticks_of "$t")"
    done 2>/dev/null
}
ticks_of() { sed 's/^.*) //' "$1"/stat | awk '{ print $12 + $13 }'; }

# stall_report TARGET JOB DEV PID: what the block layer, the server's threads and the
# kernel show while a job makes no progress, into stall/TARGET.JOB.txt.
stall_report() {
    local disk=${3#/dev/} f h
    mkdir -p $R/stall
    {
        echo "== $1 $2 on $3, server pid ${4:--}, at $(uptime_s) s"
        echo "== /sys/block/$disk/inflight: $(cat /sys/block/"$disk"/inflight 2>/dev/null)"
        echo "== /sys/block/$disk/stat: $(cat /sys/block/"$disk"/stat 2>/dev/null)"
        grep -q debugfs /proc/mounts || mount -t debugfs none /sys/kernel/debug 2>/dev/null
        for h in /sys/kernel/debug/block/"$disk"/hctx*; do
            for f in state busy dispatch dispatch_busy flags tags; do
                [ -r "$h/$f" ] && echo "== ${h##*/}/$f" && cat "$h/$f"
            done
        done 2>/dev/null
        [ -r /sys/kernel/debug/block/"$disk"/state ] && echo "== state" &&
            cat /sys/kernel/debug/block/"$disk"/state
        if [ -n "$4" ]; then
            for t in /proc/"$4"/task/*; do
                echo "== thread ${t##*/} $(cat "$t/comm") $(awk '{ print $3 }' "$t/stat")" \
                    "wchan=$(cat "$t/wchan" 2>/dev/null) ticks=$(ticks_of "$t")"
                cat "$t/stack" 2>/dev/null
            done
        fi
        echo "== fio"
        for p in $(pgrep -x fio); do
            echo "-- fio $p $(awk '{ print $3 }' /proc/"$p"/stat) wchan=$(cat /proc/"$p"/wchan)"
            cat /proc/"$p"/stack 2>/dev/null
        done
        echo "== dmesg"
        dmesg | tail -n 40
    } >"$R/stall/$1.$2.txt" 2>&1
    log "$1: $2 made no progress for 60 s after its end; see stall/$1.$2.txt"
}

# run_job TARGET DEV PID NAME RW BS IODEPTH: one fio job on DEV; PID is the server's
# (empty for brd), whose memory is sampled in the middle of the measured time.
run_job() {
    local target=$1 dev=$2 pid=$3 name=$4 rw=$5 bs=$6 depth=$7
    local t0 c0 g0 t1 c1 g1 rc sampler watchdog
    log "$target: $name on $dev"
    thread_ticks "$pid" >/tmp/threads.before
    t0=$(uptime_s); c0=$(ticks "$pid"); g0=$(guest_ticks)
    rm -f /tmp/mem.sample
    (sleep $((RAMP + RUNTIME / 2)) && memory "$pid" >/tmp/mem.sample) &
    sampler=$!
    # A job still running a minute after its end is stuck: record why before the
    # timeout below kills it.
    (sleep $((RAMP + RUNTIME + 60)) && stall_report "$target" "$name" "$dev" "$pid") &
    watchdog=$!
    timeout $((RAMP + RUNTIME + 120)) fio --name="$name" --filename="$dev" \
        --ioengine=libaio --direct=1 --rw="$rw" --bs="$bs" --iodepth="$depth" \
        --numjobs=1 --lat_percentiles=1 --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
        --output-format=json --output="$R/fio/$target.$name.json" \
        </dev/null 2>"$R/fio/$target.$name.err"
    rc=$?
    kill $watchdog 2>/dev/null
    [ $rc = 0 ] || kill $sampler 2>/dev/null
    wait $sampler
    [ -s /tmp/mem.sample ] || echo "- - - - - -" >/tmp/mem.sample
    t1=$(uptime_s); c1=$(ticks "$pid"); g1=$(guest_ticks)
    thread_ticks "$pid" >/tmp/threads.after
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$name" "$rc" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
        $((c1 - c0)) \
        "$(echo "$g0 $g1" | awk '{ print $3 - $1 "\t" $4 - $2 }')" \
        "$(tr ' ' '\t' </tmp/mem.sample)" \
        "$(awk 'NR == FNR { before[$1] = $3; next }
                { d = $3 - before[$1]; if (d > best) { best = d; who = $2 } }
                END { if (who == "") print "-\t-"; else print who "\t" best }' \
            /tmp/threads.before /tmp/threads.after)" "$t0" "$t1" >>$R/runs.tsv
    [ -s "$R/fio/$target.$name.err" ] || rm -f "$R/fio/$target.$name.err"
    return $rc
}

# run_jobs TARGET DEV PID [JOB...]: the named jobs (default all); fails if any did.
run_jobs() {
    local target=$1 dev=$2 pid=$3 only bad=0 spec
    shift 3
    only=" $* "
    for spec in $JOBS; do
        # shellcheck disable=SC2046 # split NAME:RW:BS:IODEPTH
        set -- $(echo "$spec" | tr ':' ' ')
        [ "$only" = "  " ] || case "$only" in *" $1 "*) ;; *) continue ;; esac
        run_job "$target" "$dev" "$pid" "$1" "$2" "$3" "$4" || bad=1
    done
    return $bad
}

# threads TARGET PID: the server's threads and their CPU ticks, and its memory, now.
threads() {
    printf '%s\t%s\n' "$1" "$(memory "$2" | tr ' ' '\t')" >>$R/memory-end.tsv
    for t in /proc/"$2"/task/*; do
        printf '%s\t%s\n' "$(cat "$t/comm")" "$(ticks_of "$t")"
    done >$R/threads/"$1".tsv
}
pid_of() { cat /run/vduse-test/"$1".pid; }

# vduse_blk TARGET NAME BACKING CACHE ENGINE [JOB...]: serve BACKING with vduse-blk
# (io-engine ENGINE unless empty), run the jobs, stop it and check it left nothing behind.
# A BACKING of nbd://... or nbd+unix://... is an NBD export (CACHE and ENGINE unused).
vduse_blk() {
    local target=$1 name=$2 backing=$3 cache=$4 engine=$5 pid dev
    shift 5
    # io-engine is a key of the configuration file only.
    echo "${engine:+io-engine: $engine}" >/tmp/"$target".yaml
    local source
    case $backing in
    nbd*) source="--nbd-uri $backing" ;;
    *) source="${engine:+--config /tmp/$target.yaml} --backing $backing --cache $cache" ;;
    esac
    # shellcheck disable=SC2086 # $source: flags and values without spaces
    spawn "$target" vduse-blk $source --name "$name" --num-queues 1 --queue-size 256 \
        ${BOUNCE_SIZE:+--bounce-size "$BOUNCE_SIZE"} --busy-poll-us "$BUSY_POLL_US"
    pid=$(pid_of "$target")
    if ! wait_for 30 up "$pid" has_blockdev "$name" || ! has_blockdev "$name"; then
        stop "$target"
        failed "$target" "no block device (exit code $(cat $R/"$target".rc); $target.err: $(last_words "$target"))"
        return
    fi
    dev=$(blockdev "$name")
    local jobs_ok=1
    run_jobs "$target" "$dev" "$pid" "$@" || jobs_ok=0
    threads "$target" "$pid"
    stop "$target"
    local rc
    rc=$(cat $R/"$target".rc)
    if [ "$jobs_ok" = 0 ]; then
        failed "$target" "a fio job failed (see fio/$target.*)"
    elif [ "$rc" != 0 ]; then
        failed "$target" "vduse-blk exited with $rc on SIGTERM (see $target.err)"
    elif ! no_vdpa_dev "$name" || ! no_vduse_dev "$name"; then
        failed "$target" "device $name left behind after vduse-blk stopped"
    else
        ok "$target"
    fi
}

# qsd TARGET NAME BACKING: qemu-storage-daemon's vduse-blk export of BACKING, attached
# with `vdpa dev add`, detached with `vdpa dev del` before the daemon stops.
qsd() {
    local target=$1 name=$2 backing=$3 pid dev
    spawn "$target" qemu-storage-daemon \
        --blockdev driver=file,node-name=file0,filename="$backing",cache.direct=off \
        --export type=vduse-blk,id=exp0,node-name=file0,name="$name",writable=on,num-queues=1,queue-size=256
    pid=$(pid_of "$target")
    if ! wait_for 30 up "$pid" test -e /dev/vduse/"$name" || ! [ -e /dev/vduse/"$name" ]; then
        stop "$target"
        failed "$target" "qemu-storage-daemon made no /dev/vduse/$name (exit code $(cat $R/"$target".rc); $target.err: $(last_words "$target"))"
        return
    fi
    if ! wait_for 10 vdpa dev add name "$name" mgmtdev vduse 2>>$R/"$target".vdpa.err; then
        stop "$target"
        failed "$target" "vdpa dev add name $name mgmtdev vduse failed: $(tail -n1 $R/"$target".vdpa.err)"
        return
    fi
    if ! wait_for 30 has_blockdev "$name"; then
        vdpa dev del "$name"
        stop "$target"
        failed "$target" "no block device within 30 s of vdpa dev add"
        return
    fi
    dev=$(blockdev "$name")
    local jobs_ok=1
    run_jobs "$target" "$dev" "$pid" || jobs_ok=0
    threads "$target" "$pid"
    local del_ok=1
    vdpa dev del "$name" 2>>$R/"$target".vdpa.err || del_ok=0
    wait_for 10 no_vdpa_dev "$name" || del_ok=0
    stop "$target"
    if [ "$jobs_ok" = 0 ]; then
        failed "$target" "a fio job failed (see fio/$target.*)"
    elif [ "$del_ok" = 0 ]; then
        failed "$target" "vdpa dev del $name failed: $(tail -n1 $R/"$target".vdpa.err)"
    elif ! wait_for 10 no_vduse_dev "$name"; then
        failed "$target" "device $name left behind after qemu-storage-daemon stopped"
    else
        ok "$target"
    fi
}

# --- Environment ---
{
    echo "kernel $(uname -r)"
    echo "cpus $(grep -c '^processor' /proc/cpuinfo)"
    echo "memory_kb $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    echo "fio $(fio --version)"
    echo "qemu-storage-daemon $(qemu-storage-daemon --version | head -n1)"
    echo "runtime $RUNTIME"
    echo "ramp $RAMP"
    echo "size_mib $SIZE_MIB"
} >$R/env

# --- The backing file on tmpfs, written through so that every page exists. ---
log "writing the $SIZE_MIB MiB backing file on tmpfs"
if ! dd if=/dev/zero of=/tmp/disk.img bs=1M count="$SIZE_MIB" 2>/dev/null; then
    failed setup "cannot write /tmp/disk.img ($SIZE_MIB MiB) on tmpfs"
    exit 1
fi

# The settings vduse-blk runs with (whatever defaults this build has, io-engine included).
echo "${IO_ENGINE:+io-engine: $IO_ENGINE}" >/tmp/settings.yaml
vduse-blk ${IO_ENGINE:+--config /tmp/settings.yaml} --name vblk0 --backing /tmp/disk.img \
    --cache writeback --num-queues 1 --queue-size 256 --print-config >$R/vduse-blk.config 2>&1

vduse_blk vduse-blk vblk0 /tmp/disk.img writeback "$IO_ENGINE"
qsd qsd qsd0 /tmp/disk.img

# --- vduse-blk over NBD: qemu-nbd exports the same file (raw, its default writeback
# cache and thread-pool AIO), on a Unix socket and on TCP over the loopback. ---
# nbd_target TARGET NAME URI QEMU-NBD-ARGS...
nbd_target() {
    local target=$1 name=$2 uri=$3
    shift 3
    spawn "$target-server" qemu-nbd --persistent --format=raw "$@" /tmp/disk.img
    if ! wait_for 10 qemu-nbd --list "$@" >/dev/null 2>&1; then
        stop "$target-server"
        failed "$target" "qemu-nbd did not start ($(last_words "$target-server"))"
        return
    fi
    vduse_blk "$target" "$name" "$uri" - ""
    stop "$target-server"
}
if [ "$NBD" = 1 ]; then
    echo "qemu-nbd $(qemu-nbd --version | head -n1)" >>$R/env
    nbd_target nbd-unix vnbdu0 "nbd+unix:///?socket=/tmp/nbd.sock" --socket=/tmp/nbd.sock
    nbd_target nbd-tcp vnbdt0 "nbd://127.0.0.1:10809" --bind=127.0.0.1 --port=10809
    # The kernel's NBD client on the same server: qemu-nbd --connect hands a socket to
    # nbd.ko and serves the other end.
    if ! modprobe nbd nbds_max=1 2>/tmp/nbd.err; then
        failed kernel-nbd "modprobe nbd failed: $(cat /tmp/nbd.err)"
    elif ! mkdir -p /var/lock || ! qemu-nbd --connect=/dev/nbd0 --format=raw /tmp/disk.img 2>$R/kernel-nbd.err ||
        ! wait_for 10 sh -c '[ "$(cat /sys/block/nbd0/size)" -gt 0 ]'; then
        failed kernel-nbd "qemu-nbd --connect failed: $(last_words kernel-nbd)"
    else
        if run_jobs kernel-nbd /dev/nbd0 ""; then ok kernel-nbd; else failed kernel-nbd "a fio job failed (see fio/kernel-nbd.*)"; fi
        qemu-nbd --disconnect /dev/nbd0 >/dev/null 2>>$R/kernel-nbd.err ||
            failed kernel-nbd "qemu-nbd --disconnect failed"
    fi
    wait_for 10 rmmod nbd 2>/dev/null
fi
rm -f /tmp/disk.img

# --- brd: the ceiling, then vduse-blk with cache none over it. ---
log "loading brd ($SIZE_MIB MiB)"
if modprobe brd rd_nr=1 rd_size=$((SIZE_MIB * 1024)) max_part=0 2>/tmp/brd.err &&
    wait_for 10 test -b /dev/ram0 &&
    dd if=/dev/zero of=/dev/ram0 bs=1M count="$SIZE_MIB" oflag=direct 2>/dev/null; then
    if run_jobs brd /dev/ram0 ""; then ok brd; else failed brd "a fio job failed (see fio/brd.*)"; fi
    vduse_blk vduse-blk-none vblkd0 /dev/ram0 none "$IO_ENGINE" randread-4k-qd1 randread-4k-qd16
    if grep -q '^io-engine:' $R/vduse-blk.config; then
        vduse_blk vduse-blk-none-sync vblks0 /dev/ram0 none sync randread-4k-qd1 randread-4k-qd16
    fi
    rmmod brd || failed brd "rmmod brd failed (still in use?)"
else
    failed brd "modprobe brd failed: $(cat /tmp/brd.err)"
    failed vduse-blk-none "needs brd"
fi

# --- Nothing may be left: no VDUSE device, no vdpa device. ---
left=$( (ls /dev/vduse; ls /sys/bus/vdpa/devices) 2>/dev/null | grep -vx control)
if [ -n "$left" ]; then
    failed cleanup "left behind: $(echo "$left" | tr '\n' ' ')"
fi
exit $FAILED
