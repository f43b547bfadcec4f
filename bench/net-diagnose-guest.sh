# shellcheck shell=dash
# Checks behind BENCHMARKS.md ("Network: `bench/net`"): what limits pktgen's rate
# into vduse-net-null (drop mode). Runs in a guest booted by tests/vm-run:
#
#   tests/vm-run --release --kernel 7.3 --memory 1024 --cpus 2 --host ip --host perf \
#       --modules vduse,virtio_vdpa,virtio_net,pktgen,dummy \
#       --file bench/net-diagnose-guest.sh:/x.sh --console --timeout 300 -- sh /x.sh
#
# Each line "RESULT name: ... NNNpps ..." is one 5 s pktgen run of 60-byte frames from
# vCPU 0 (as in bench/net), into:
#   dummy                  the dummy netdev
#   queue-size N           vduse-net-null with --queue-size N (256, 1024, 4096)
#   irq-on-cpu1            the default queue size, with the device's interrupt callbacks
#                          moved to vCPU 1 (irq_cb_affinity), away from pktgen
#   napi-tx-0              the default, with virtio_net loaded with napi_tx=0 (the guest
#                          frees sent frames as it sends; a transmit interrupt only when
#                          the ring is full)
#   profiled               the default again, under `perf record -a` (cpu-clock): the
#                          busiest symbols follow, by thread
# and, for the default run, the kernel's own counts over 4 s of it (kprobes read by
# `perf stat`): frames sent (start_xmit), kicks (virtqueue_notify), transmit interrupts
# served (virtnet_poll_tx) and queue restarts after a stop (__netif_schedule).
exec >/dev/console 2>&1
. /lib/vduse-test/helpers.sh
for m in vduse virtio_vdpa pktgen dummy; do modprobe $m; done
echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6
T=/sys/kernel/tracing
mount -t tracefs none $T 2>/dev/null
iface_of() { ls /sys/bus/vdpa/devices/"$1"/virtio*/net 2>/dev/null | head -n1 | grep .; }

# send NAME IFACE [COUNT_KERNEL]: 5 s of pktgen into IFACE; prints the result line.
send() {
    local name=$1 iface=$2 dev=/proc/net/pktgen/$2 c starter
    echo rem_device_all >/proc/net/pktgen/kpktgend_0
    echo "add_device $iface" >/proc/net/pktgen/kpktgend_0
    for c in "count 0" "pkt_size 60" "dst_mac 02:00:00:00:00:99" "dst 127.0.0.2" \
        "delay 0" "clone_skb 0"; do
        echo "$c" >"$dev"
    done
    echo start >/proc/net/pktgen/pgctrl &
    starter=$!
    if [ "$3" = count ]; then
        sleep 1
        perf stat -a -e 'kprobes:*' -- sleep 4
    elif [ "$3" = profile ]; then
        sleep 1
        perf record -q -a -F 499 -e cpu-clock -o /tmp/perf.data -- sleep 4
    else
        sleep 5
    fi
    echo stop >/proc/net/pktgen/pgctrl
    wait $starter
    echo "RESULT $name: $(grep -A1 '^Result' "$dev" | tail -n1)"
}

# device NAME FLAGS...: start vduse-net-null, bring its interface up; sets I.
device() {
    local name=$1
    shift
    spawn srv vduse-net-null --name diag --mode drop --mac 02:00:00:00:00:99 --mtu 1500 "$@"
    wait_for 60 iface_of diag || { echo "RESULT $name: no interface"; return 1; }
    I=$(iface_of diag)
    ip link set "$I" up
    sleep 1
}

ip link set dummy0 up && send dummy dummy0
ip link del dummy0

modprobe virtio_net
for f in start_xmit virtqueue_notify virtnet_poll_tx __netif_schedule; do
    echo "p:p_$f $f" >>$T/kprobe_events
done
device default && send "queue-size 256" "$I" count && stop srv
echo >$T/kprobe_events
for size in 1024 4096; do
    device "queue-size $size" --queue-size $size && send "queue-size $size" "$I" && stop srv
done
if device irq-on-cpu1; then
    for q in /sys/class/vduse/diag/vq*; do echo 2 >"$q"/irq_cb_affinity; done
    send irq-on-cpu1 "$I"
    stop srv
fi
modprobe -r virtio_net && modprobe virtio_net napi_tx=0
device napi-tx-0 && send napi-tx-0 "$I" && stop srv
modprobe -r virtio_net && modprobe virtio_net
echo 0 >/proc/sys/kernel/kptr_restrict
device profiled && send profiled "$I" profile && stop srv
perf report -i /tmp/perf.data --stdio --no-children --sort comm,sym 2>/dev/null |
    grep -v '^#' | grep . | head -n 25
