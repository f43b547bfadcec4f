# shellcheck shell=dash
# The guest side of bench/fs: runs inside ONE boot of a Debian kernel (busybox sh, as
# root) and runs the same fio jobs against each target in turn, job by job:
#
#   vduse-fs  our server (release build) exporting /srv/tmpfs/export, a directory on a
#             tmpfs of the guest, mounted with `mount -t virtiofs fs0 /mnt/v`
#   tmpfs     /srv/tmpfs/native, a directory on that same tmpfs, used directly: the ceiling
#
#   sh /bench/fs-guest.sh RUNTIME RAMP SIZE_MIB FILES [CACHE]
#
# Data jobs (fio): ioengine=psync, direct=1, 4 jobs at once (numjobs=4, group_reporting),
# one SIZE_MIB file per job, time_based, RAMP s then RUNTIME s: 4 threads keep up to 4
# requests in flight on both targets, the same way on each. direct=1 because with
# `cache: auto` the guest's page cache would otherwise serve every read after the first,
# and measure itself.
#
# Metadata jobs (fio's filecreate, filestat, filedelete engines, FILES files in one
# directory, one process): create = open(O_CREAT) and close of an empty file; stat =
# stat(); delete = unlink(). Between create and stat fio fills every file to 1 KiB
# (untimed). Before each timed phase, after fio's own set-up has looked at every file,
# `sysctl -w vm.drop_caches=2` drops the guest's dentries and inodes (fio's exec_prerun;
# what it printed goes to prerun.log), so that on vduse-fs each operation starts with a
# LOOKUP at the server rather than a hit in the guest's caches (tmpfs keeps its dentries:
# nothing to drop).
#
# CACHE is vduse-fs's --cache (default auto); INFLIGHT_LOG its --inflight-log (default:
# the server's default).
#
# Results (sent back to the host by the harness, from /results):
#   fio/TARGET.JOB.json  fio's JSON summary of each job
#   runs.tsv             per job: fio exit code, wall time, the server's CPU ticks, the
#                        guest's CPU ticks (busy, total), start and end (guest uptime, s)
#   status.tsv           TARGET ok | TARGET failed: why
#   env                  kernel, CPUs, memory, program versions, parameters
#   vduse-fs.config      vduse-fs --print-config of the export
#   prerun.log           what fio's exec_prerun printed, per metadata job
#   vduse-fs.out/err/rc  what the server printed, and its exit code
# Progress goes to stderr. The exit code is 0 when every target ran and cleaned up.

RUNTIME=${1:-5}
RAMP=${2:-1}
SIZE_MIB=${3:-64}
FILES=${4:-2000}
CACHE=${5:-auto}
INFLIGHT_LOG=${6:-default}

# spawn, stop, wait_for; and the installed programs win over busybox applets.
# shellcheck source=/dev/null
. /lib/vduse-test/helpers.sh

R=/results
mkdir -p $R/fio
printf 'target\tjob\tfio_rc\twall_s\tserver_ticks\tbusy_ticks\ttotal_ticks\tstart_s\tend_s\n' >$R/runs.tsv
: >$R/status.tsv
FAILED=0
# fio's exec_prerun leaves JOB.prerun.txt in the current directory.
cd /tmp || exit 1

# The data jobs: NAME:RW:BS. The metadata jobs: NAME:ENGINE.
JOBS="randread-4k:randread:4k randwrite-4k:randwrite:4k read-1m:read:1M write-1m:write:1M"
META="create:filecreate stat:filestat delete:filedelete"
TARGETS="vduse-fs tmpfs"
EXPORT=/srv/tmpfs/export
MNT=/mnt/v

log() { echo "bench: $*" >&2; }

# failed TARGET WHY: the target's verdict (once; ok is written at the end).
failed() {
    grep -q "^$1	" $R/status.tsv ||
        printf '%s\tfailed: %s\n' "$1" "$2" >>$R/status.tsv
    log "$1: FAILED: $2"
    FAILED=1
}

# ticks PID: user + system CPU time of a process (all its threads), in clock ticks.
ticks() {
    [ -n "$1" ] || { echo 0; return; }
    sed 's/^.*) //' /proc/"$1"/stat 2>/dev/null | awk '{ print $12 + $13 }' | grep . || echo 0
}
# guest_ticks: busy and total CPU ticks of the whole guest.
guest_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# dir_of TARGET: where the target's files go.
dir_of() { if [ "$1" = vduse-fs ]; then echo $MNT; else echo /srv/tmpfs/native; fi; }
# pid_of TARGET: the server's pid (empty for tmpfs).
pid_of() { [ "$1" = vduse-fs ] && cat /run/vduse-test/vduse-fs.pid; }

# run_fio TARGET NAME FIO-ARGS...: one timed fio run, its line in runs.tsv.
run_fio() {
    local target=$1 name=$2 pid t0 c0 g0 t1 c1 g1 rc
    shift 2
    pid=$(pid_of "$target")
    log "$target: $name"
    t0=$(uptime_s); c0=$(ticks "$pid"); g0=$(guest_ticks)
    timeout $((RAMP + RUNTIME + 300)) fio --name="$name" "$@" \
        --output-format=json --output="$R/fio/$target.$name.json" \
        </dev/null 2>"$R/fio/$target.$name.err"
    rc=$?
    t1=$(uptime_s); c1=$(ticks "$pid"); g1=$(guest_ticks)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$name" "$rc" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
        $((c1 - c0)) \
        "$(echo "$g0 $g1" | awk '{ print $3 - $1 "\t" $4 - $2 }')" "$t0" "$t1" >>$R/runs.tsv
    [ -s "$R/fio/$target.$name.err" ] || rm -f "$R/fio/$target.$name.err"
    if [ -e "$name.prerun.txt" ]; then
        echo "$target $name: $(cat "$name.prerun.txt")" >>$R/prerun.log
        rm -f "$name.prerun.txt"
    fi
    [ $rc = 0 ] || failed "$target" "fio $name exited with $rc (see fio/$target.$name.*)"
    return $rc
}

# data TARGET NAME RW BS [EXTRA...]: a data job on the target's 4 files.
# shellcheck disable=SC2016 # fio expands $jobnum and $filenum itself
data() {
    local target=$1 name=$2 rw=$3 bs=$4
    shift 4
    run_fio "$target" "$name" --directory="$(dir_of "$target")" --filename_format='data.$jobnum' \
        --ioengine=psync --direct=1 --rw="$rw" --bs="$bs" --numjobs=4 --group_reporting \
        --size="${SIZE_MIB}M" --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" "$@"
}

# meta TARGET NAME ENGINE [EXTRA...]: a metadata job on FILES files in DIR/meta.
# shellcheck disable=SC2016
meta() {
    local target=$1 name=$2 engine=$3
    shift 3
    run_fio "$target" "$name" --directory="$(dir_of "$target")/meta" --ioengine="$engine" \
        --nrfiles="$FILES" --filesize=1k --bs=1k --openfiles=1 --filename_format='f.$filenum' \
        --exec_prerun='sysctl -w vm.drop_caches=2' "$@"
}

# has_tag TAG: the virtiofs driver knows TAG.
# shellcheck disable=SC2317 # called through wait_for
has_tag() { cat /sys/fs/virtiofs/*/tag 2>/dev/null | grep -qx "$1"; }
# up PID CMD...: CMD succeeds, or process PID has ended (no waiting for a dead server).
# shellcheck disable=SC2317 # called through wait_for
up() {
    local pid=$1
    shift
    "$@" || ! kill -0 "$pid" 2>/dev/null
}

# --- Environment ---
{
    echo "kernel $(uname -r)"
    echo "cpus $(grep -c '^processor' /proc/cpuinfo)"
    echo "memory_kb $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    echo "fio $(fio --version)"
    echo "vduse-fs $(vduse-fs --version | head -n1)"
    echo "runtime $RUNTIME"
    echo "ramp $RAMP"
    echo "size_mib $SIZE_MIB"
    echo "files $FILES"
} >$R/env

# --- The tmpfs, the export, the server, the mount. ---
mkdir -p /srv/tmpfs $MNT
if ! mount -t tmpfs -o size=$((2 * 4 * SIZE_MIB + 256))m bench /srv/tmpfs; then
    failed setup "cannot mount a tmpfs on /srv/tmpfs"
    exit 1
fi
mkdir -p $EXPORT /srv/tmpfs/native/meta
if ! modprobe vduse || ! modprobe virtio_vdpa; then
    failed setup "modprobe vduse virtio_vdpa failed"
    exit 1
fi
set -- --name fs0 --shared-dir $EXPORT --cache "$CACHE"
[ "$INFLIGHT_LOG" = default ] || set -- "$@" --inflight-log "$INFLIGHT_LOG"
vduse-fs "$@" --print-config >$R/vduse-fs.config 2>&1
# The server raises its own limit on open files (it holds one per inode the guest knows).
spawn vduse-fs vduse-fs "$@"
pid=$(cat /run/vduse-test/vduse-fs.pid)
if ! wait_for 30 up "$pid" has_tag fs0 || ! has_tag fs0; then
    stop vduse-fs
    failed vduse-fs "no virtiofs tag fs0 (exit code $(cat $R/vduse-fs.rc); vduse-fs.err: $(tail -n1 $R/vduse-fs.err))"
    TARGETS=tmpfs
elif ! mount -t virtiofs fs0 $MNT 2>/tmp/mount.err; then
    stop vduse-fs
    failed vduse-fs "mount -t virtiofs fs0 failed: $(cat /tmp/mount.err)"
    TARGETS=tmpfs
else
    mkdir -p $MNT/meta
fi

# --- The data files: written once, untimed (4 files of SIZE_MIB per target). ---
# shellcheck disable=SC2016
for target in $TARGETS; do
    log "$target: writing 4 files of $SIZE_MIB MiB"
    run_fio "$target" layout --directory="$(dir_of "$target")" --filename_format='data.$jobnum' \
        --ioengine=psync --rw=read --bs=1M --numjobs=4 --size="${SIZE_MIB}M" --create_only=1
done

# --- The jobs, each on every target before the next. ---
for spec in $JOBS; do
    # shellcheck disable=SC2046 # split NAME:RW:BS
    set -- $(echo "$spec" | tr ':' ' ')
    for target in $TARGETS; do data "$target" "$1" "$2" "$3"; done
done
for target in $TARGETS; do rm -f "$(dir_of "$target")"/data.*; done
for spec in $META; do
    name=${spec%%:*}
    engine=${spec#*:}
    for target in $TARGETS; do
        case $name in
        create) meta "$target" create filecreate --create_on_open=1 --fallocate=none ;;
        *) meta "$target" "$name" "$engine" ;;
        esac
    done
    if [ "$name" = create ]; then
        # Fill every file to 1 KiB, untimed.
        # shellcheck disable=SC2016
        for target in $TARGETS; do
            run_fio "$target" fill --directory="$(dir_of "$target")/meta" --ioengine=filestat \
                --nrfiles="$FILES" --filesize=1k --bs=1k --openfiles=1 --filename_format='f.$filenum' \
                --create_only=1
        done
    fi
done
for target in $TARGETS; do
    left=$(find "$(dir_of "$target")/meta" -type f | wc -l)
    [ "$left" = 0 ] || failed "$target" "$left files left after delete"
done

# --- Unmount, stop the server: nothing may be left. ---
if [ "$TARGETS" != tmpfs ]; then
    umount $MNT || failed vduse-fs "umount $MNT failed"
    stop vduse-fs
    rc=$(cat $R/vduse-fs.rc)
    [ "$rc" = 0 ] || failed vduse-fs "vduse-fs exited with $rc on SIGTERM (see vduse-fs.err)"
fi
left=$( (ls /dev/vduse; ls /sys/bus/vdpa/devices) 2>/dev/null | grep -vx control)
[ -z "$left" ] || failed cleanup "left behind: $(echo "$left" | tr '\n' ' ')"
for target in vduse-fs tmpfs; do
    grep -q "^$target	" $R/status.tsv || printf '%s\tok\n' "$target" >>$R/status.tsv
done
log finished
exit $FAILED
