# shellcheck shell=dash
# bench/net-guest.sh: the guest half of bench/net. In one boot, the kernel's pktgen sends
# frames into
#   dummy           the kernel's dummy netdev (the ceiling: the frame is freed at once)
#   vduse-net-null  our null device in drop mode (release build), through virtio_net
#   vduse-poll      drop mode with --busy-poll-us POLL_US (when POLL_US is not 0)
#   vduse-echo      echo mode: every frame also comes back (receive path)
# for SECONDS each, with frames of each SIZE (bytes without the FCS).
#
#   sh /bench/net-guest.sh SECONDS POLL_US SIZE...
#
# Results in /results (sent back to the host by the harness):
#   runs.tsv   target, size, frames sent, pps (pktgen's), Mb/s, the server's CPU ticks
#              and the guest's busy and total CPU ticks over the run, the server's sent
#              and received frame counters
#   status.tsv TARGET ok | TARGET failed: why
#   env        kernel, CPUs, versions
SECONDS_PER_RUN=${1:-5}
POLL_US=${2:-0}
shift 2
SIZES=${*:-60 1514}

# spawn, stop, wait_for; and the installed programs win over busybox applets.
# shellcheck source=/dev/null
. /lib/vduse-test/helpers.sh

R=/results
mkdir -p $R
printf 'target\tsize\tsent\tpps\tmbps\tserver_ticks\tbusy_ticks\ttotal_ticks\tserver_tx\tserver_rx\n' >$R/runs.tsv
: >$R/status.tsv
log() { echo "bench: $*" >&2; }
{
    echo "kernel=$(uname -r)"
    echo "cpus=$(nproc)"
    echo "memory_kb=$(awk '/MemTotal/ { print $2 }' /proc/meminfo)"
    echo "vduse_net_null=$(vduse-net-null --version)"
} >$R/env

for m in vduse virtio_vdpa virtio_net dummy pktgen; do
    modprobe $m || { printf 'all\tfailed: modprobe %s\n' $m >>$R/status.tsv; exit 1; }
done
# No IPv6 on new interfaces: the kernel sends nothing of its own on them.
echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6

guest_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
proc_ticks() { [ -n "$1" ] && awk '{ print $14 + $15 }' /proc/"$1"/stat 2>/dev/null || echo 0; }

# pktgen_run TARGET IFACE SIZE PID: frames of SIZE from pktgen's thread on vCPU 0 into
# IFACE for SECONDS_PER_RUN, as fast as it can; one line of runs.tsv.
pktgen_run() {
    local target=$1 dev=/proc/net/pktgen/$2 size=$3 pid=$4 b0 t0 b1 t1 s0 s1 result
    echo rem_device_all >/proc/net/pktgen/kpktgend_0
    echo "add_device $2" >/proc/net/pktgen/kpktgend_0
    echo "count 0" >"$dev"
    echo "pkt_size $size" >"$dev"
    echo "dst_mac 02:00:00:00:00:99" >"$dev"
    echo "dst 127.0.0.2" >"$dev"
    echo "delay 0" >"$dev"
    echo "clone_skb 0" >"$dev"
    read -r b0 t0 <<EOT
$(guest_ticks)
EOT
    s0=$(proc_ticks "$pid")
    echo start >/proc/net/pktgen/pgctrl &
    local starter=$!
    sleep "$SECONDS_PER_RUN"
    echo stop >/proc/net/pktgen/pgctrl
    wait $starter
    read -r b1 t1 <<EOT
$(guest_ticks)
EOT
    s1=$(proc_ticks "$pid")
    result=$(grep -A1 '^Result' "$dev" | tr '\n' ' ')
    log "$target $size: $result"
    # "Result: OK: 5000123(c..+d..) usec, 123456 (60byte,0frags)  24690pps 11Mb/sec ..."
    local sent pps mbps counters=""
    sent=$(echo "$result" | sed -n 's/.* usec, \([0-9]*\) (.*/\1/p')
    pps=$(echo "$result" | sed -n 's/.* \([0-9]*\)pps .*/\1/p')
    mbps=$(echo "$result" | sed -n 's/.*pps \([0-9]*\)Mb\/sec.*/\1/p')
    if [ -n "$pid" ]; then
        kill -USR1 "$pid"
        sleep 0.5
        counters=$(grep '"event":"signal"' $R/"$target".out | tail -n1 |
            sed -n 's/.*"tx":{"frames":\([0-9]*\),.*"rx":{"frames":\([0-9]*\),.*/\1\t\2/p')
    fi
    [ -n "$counters" ] || counters="-	-"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$size" "${sent:--}" "${pps:--}" \
        "${mbps:--}" $((s1 - s0)) $((b1 - b0)) $((t1 - t0)) "$counters" >>$R/runs.tsv
}

# --- dummy: the ceiling (loading the module made dummy0 already, on most kernels).
{ [ -e /sys/class/net/dummy0 ] || ip link add dummy0 type dummy; } && ip link set dummy0 up || {
    printf 'dummy\tfailed: no dummy0\n' >>$R/status.tsv
    exit 1
}
for size in $SIZES; do pktgen_run dummy dummy0 "$size" ""; done
ip link del dummy0
printf 'dummy\tok\n' >>$R/status.tsv

# iface_of NAME: the interface virtio_net made for vdpa device NAME.
iface_of() { ls /sys/bus/vdpa/devices/"$1"/virtio*/net 2>/dev/null | head -n1 | grep .; }

# --- vduse-net-null: drop, drop with busy polling, echo.
runs="vduse-net-null:drop:0 vduse-echo:echo:0"
[ "$POLL_US" = 0 ] || runs="vduse-net-null:drop:0 vduse-poll:drop:$POLL_US vduse-echo:echo:0"
for run in $runs; do
    target=${run%%:*}
    mode=${run#*:}
    poll=${mode#*:}
    mode=${mode%:*}
    spawn $target vduse-net-null --name bench-$mode --mode $mode --mac 02:00:00:00:00:99 \
        --mtu 1500 --busy-poll-us "$poll"
    pid=$(cat /run/vduse-test/$target.pid)
    if ! wait_for 30 iface_of bench-$mode; then
        stop $target
        printf '%s\tfailed: no interface (exit %s)\n' $target "$(cat $R/$target.rc)" >>$R/status.tsv
        continue
    fi
    I=$(iface_of bench-$mode)
    ip link set "$I" up
    wait_for 10 sh -c "[ \"\$(cat /sys/class/net/$I/carrier)\" = 1 ]"
    for size in $SIZES; do pktgen_run $target "$I" "$size" "$pid"; done
    stop $target
    if [ "$(cat $R/$target.rc)" = 0 ] && [ "$(ls /dev/vduse)" = control ]; then
        printf '%s\tok\n' $target >>$R/status.tsv
    else
        printf '%s\tfailed: exit %s, /dev/vduse: %s\n' $target "$(cat $R/$target.rc)" "$(ls /dev/vduse | tr '\n' ' ')" >>$R/status.tsv
    fi
done
log "done"
