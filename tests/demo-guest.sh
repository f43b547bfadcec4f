# shellcheck shell=dash
# The guest side of tests/demo: run as root by busybox sh in a guest of the real-kernel
# harness (tests/vm-run ... -- sh /demo.sh), it shows each tool at work as a transcript
# on stdout: every command as a person would type it, then its output. A step that does
# not do what it should ends the script with status 1 and a last line naming the step.
# Progress markers go to the console, where tests/demo's progress line reads them.

# wait_for and virtiofs_tag; and the installed programs (ip, mkfs.ext4) over busybox's
# applets of the same name.
# shellcheck source=/dev/null
. /lib/vduse-test/helpers.sh

STEPS=6
STEP=0
TITLE=""

# step TITLE: start the next step.
step() {
    STEP=$((STEP + 1))
    TITLE=$1
    printf '\n== %s/%s %s\n' "$STEP" "$STEPS" "$TITLE"
    echo "vduse-demo: step $STEP/$STEPS: $TITLE (at $(cut -d' ' -f1 /proc/uptime) s)" >/dev/console
}

# fail WHY: end the demo, naming the step.
fail() {
    printf 'demo: step %s/%s (%s) failed: %s\n' "$STEP" "$STEPS" "$TITLE" "$*"
    exit 1
}

# say TEXT: a line of explanation in the transcript.
say() {
    printf '# %s\n' "$*"
}

# run COMMAND: show COMMAND as typed, run it, show its output; a failure fails the step.
run() {
    printf '$ %s\n' "$1"
    eval "$1" 2>&1 || fail "\`$1\` exited with status $?"
}

# try COMMAND: like run, but its exit status is only shown.
try() {
    local rc
    printf '$ %s\n' "$1"
    eval "$1" 2>&1
    rc=$?
    [ "$rc" = 0 ] || say "(exit status $rc)"
    return "$rc"
}

# serve NAME COMMAND: show `COMMAND &` as typed and start it in the background, its
# stdout in /tmp/NAME.out and its log (stderr) in /tmp/NAME.log.
serve() {
    printf '$ %s &\n' "$2"
    eval "exec $2" >"/tmp/$1.out" 2>"/tmp/$1.log" &
    echo $! >"/tmp/$1.pid"
}

# await SECONDS WHAT COMMAND...: wait until COMMAND succeeds, or fail the step saying
# what did not happen (with the server logs so far).
await() {
    local secs=$1 what=$2
    shift 2
    wait_for "$secs" "$@" && return 0
    for log in /tmp/*.log; do
        [ -e "$log" ] && printf -- '--- %s:\n%s\n' "$log" "$(cat "$log")"
    done
    fail "$what did not happen within $secs s"
}

# started NAME: wait until server NAME says it serves, then show its log so far (what a
# person would see on the terminal).
started() {
    await 30 "\"serving\" in the log of $1" grep -q serving "/tmp/$1.log"
    cat "/tmp/$1.log"
}

# stop_server NAME PROGRAM: SIGTERM to the server, as a person would send it. It must exit
# with status 0, with no error in its log.
stop_server() {
    local pid rc
    pid=$(cat "/tmp/$1.pid")
    run "kill \$(pidof $2)"
    wait "$pid"
    rc=$?
    say "$2 exited with status $rc"
    [ "$rc" = 0 ] || fail "$2 exited with status $rc; its log: $(cat "/tmp/$1.log")"
    ! grep -E '^\[ERROR|panicked' "/tmp/$1.log" || fail "$2 logged errors"
}

echo "Linux $(uname -r) under QEMU; this transcript was typed as root in the guest."

step "vduse-probe: what this kernel offers"
run "modprobe -a vduse virtio_vdpa"
run "vduse-probe"

step "vduse-blk: a disk served from a file, with ext4 on it"
run "modprobe -a virtio_blk ext4"
serve blk "vduse-blk --name demo0 --backing /tmp/demo0.img --size 64M --create"
await 30 "the disk of demo0" sh -c 'ls /sys/bus/vdpa/devices/demo0/virtio*/block 2>/dev/null | grep -q .'
started blk
run "ls /sys/bus/vdpa/devices/demo0/virtio*/block"
disk=$(ls /sys/bus/vdpa/devices/demo0/virtio*/block)
run "mkfs.ext4 -q /dev/$disk"
run "mkdir -p /mnt/disk && mount /dev/$disk /mnt/disk"
run "echo 'written through vduse-blk' >/mnt/disk/hello.txt"
say "unmounted and mounted again, so what follows is read back from the disk:"
run "umount /mnt/disk && mount /dev/$disk /mnt/disk"
run "ls -l /mnt/disk"
run "cat /mnt/disk/hello.txt"
run "df -h /mnt/disk"
run "umount /mnt/disk"

step "vduse-fs: a directory shared over virtio-fs"
run "mkdir -p /srv/share && echo 'made on the host side' >/srv/share/from-host.txt"
serve fs "vduse-fs --name share0 --shared-dir /srv/share"
started fs
await 30 "the virtiofs tag share0" virtiofs_tag share0
run "mkdir -p /mnt/share && mount -t virtiofs share0 /mnt/share"
run "ls -l /mnt/share"
run "cat /mnt/share/from-host.txt"
run "echo 'written through the share' >/mnt/share/from-mount.txt"
run "ls -l /srv/share"
run "umount /mnt/share"

step "vduse-net-null: a network interface that counts every frame and drops it"
run "modprobe virtio_net"
say "no IPv6 on new interfaces, so the kernel sends nothing on them by itself:"
run "echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6"
serve net "vduse-net-null --name null0"
await 30 "the interface of null0" sh -c 'ls /sys/bus/vdpa/devices/null0/virtio*/net 2>/dev/null | grep -q .'
started net
run "ls /sys/bus/vdpa/devices/null0/virtio*/net"
ifname=$(ls /sys/bus/vdpa/devices/null0/virtio*/net)
run "ip link set $ifname up && ip addr add 192.0.2.1/24 dev $ifname"
run "ip neigh add 192.0.2.2 lladdr 02:00:00:00:00:02 dev $ifname"
say "three pings to that neighbour; no reply comes back from a null device:"
try "ping -c 3 -i 0.2 -W 1 192.0.2.2"
run "ip -s link show $ifname"
say "the server's own counters, one JSON line on its stdout at SIGUSR1:"
run "kill -USR1 \$(pidof vduse-net-null)"
await 10 "the counters of vduse-net-null" grep -q '"event":"signal"' /tmp/net.out
counters=$(grep '"event":"signal"' /tmp/net.out)
printf '%s\n' "$counters"
server_tx=$(printf '%s\n' "$counters" | sed -n 's/.*"tx":{"frames":\([0-9]*\).*/\1/p')
iface_tx=$(cat "/sys/class/net/$ifname/statistics/tx_packets")
[ "${server_tx:-0}" -gt 0 ] || fail "vduse-net-null counted no frame: $counters"
[ "$server_tx" = "$iface_tx" ] ||
    fail "the interface sent $iface_tx frames, vduse-net-null counted $server_tx"
say "$ifname sent $iface_tx frames; vduse-net-null counted $server_tx"

step "vduse-probe again: three devices, each served"
run "vduse-probe"

step "stopping the servers"
stop_server blk vduse-blk
stop_server fs vduse-fs
stop_server net vduse-net-null
run "ls /dev/vduse"
run "ls /sys/bus/vdpa/devices | wc -l"
[ "$(ls /dev/vduse)" = control ] || fail "devices left in /dev/vduse: $(ls /dev/vduse)"
[ -z "$(ls /sys/bus/vdpa/devices)" ] || fail "devices left on the vdpa bus"

echo "vduse-demo: done (at $(cut -d' ' -f1 /proc/uptime) s)" >/dev/console
printf '\ndemo: all %s steps worked; every server stopped cleanly and removed its device\n' "$STEPS"
