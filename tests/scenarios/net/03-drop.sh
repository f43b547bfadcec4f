# Drop mode.
# Under systemd (Type=notify): READY=1 comes once the device is on the vdpa bus.
spawn notify notify-listen /run/notify.sock --check /sys/bus/vdpa/devices/net0
wait_for 60 test -S /run/notify.sock
export NOTIFY_SOCKET=/run/notify.sock
spawn net0 vduse-net-null --config /etc/vduse/net-null/net0.yaml --mtu 9000
unset NOTIFY_SOCKET
capture net0-ready reap notify
capture net0-up wait_for 60 iface_of net0
I=$(iface_of net0)
cat "/sys/class/net/$I/address" | result net0.mac
cat "/sys/class/net/$I/mtu" | result net0.mtu
capture net0-link ip link set "$I" up
capture net0-carrier wait_for 60 carrier_is "$I" 1
stat_of "$I" tx_packets | result drop.tx_packets.before
stat_of "$I" tx_bytes | result drop.tx_bytes.before
capture drop-pktgen pktgen "$I" "$DROP_FRAMES" "$DROP_FRAME_SIZE" "$NET0_MAC" 0
stat_of "$I" tx_packets | result drop.tx_packets.after
stat_of "$I" tx_bytes | result drop.tx_bytes.after
capture drop-counters counters net0 1
