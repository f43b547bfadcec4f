# The helpers of the steps: iface_of, stat_of, carrier_is, pktgen, counters.
# The interface virtio_net made for vdpa device $1.
iface_of() {
    ls /sys/bus/vdpa/devices/"$1"/virtio*/net 2>/dev/null | head -n1 | grep .
}
stat_of() { cat /sys/class/net/"$1"/statistics/"$2"; }
carrier_is() { [ "$(cat /sys/class/net/"$1"/carrier 2>/dev/null)" = "$2" ]; }
# pktgen IFACE COUNT SIZE DST_MAC DELAY_NS: send COUNT frames of SIZE bytes; prints
# pktgen's result line.
pktgen() {
    local dev=/proc/net/pktgen/"$1"
    echo rem_device_all >/proc/net/pktgen/kpktgend_0
    echo "add_device $1" >/proc/net/pktgen/kpktgend_0
    echo "count $2" >"$dev"
    echo "pkt_size $3" >"$dev"
    echo "dst_mac $4" >"$dev"
    echo "dst 127.0.0.2" >"$dev"
    echo "delay $5" >"$dev"
    echo "clone_skb 0" >"$dev"
    echo start >/proc/net/pktgen/pgctrl
    grep -A2 '^Result' "$dev"
}
# counters NAME SIGNAL_COUNT: SIGUSR1 to server NAME, then wait for its SIGNAL_COUNT-th
# "signal" line on stdout.
counters() {
    kill -USR1 "$(cat /run/vduse-test/"$1".pid)"
    wait_for 60 sh -c "[ \$(grep -c '\"event\":\"signal\"' /results/$1.out) -ge $2 ]"
}
