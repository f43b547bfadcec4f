# Killed, then taken over.
spawn tk0 vduse-net-null --name tk0 --mode echo --mac "$TAKEOVER_MAC"
capture tk0-up wait_for 60 iface_of tk0
T=$(iface_of tk0)
capture tk0-link ip link set "$T" up
capture tk0-carrier wait_for 60 carrier_is "$T" 1
kill -KILL "$(cat /run/vduse-test/tk0.pid)"
reap tk0
ls /sys/class/net | result tk0.killed.net
# The new server serves as tester: it takes over as root, then switches.
spawn tk1 vduse-net-null --name tk0 --mode echo --mac "$TAKEOVER_MAC" --user tester
capture tk1-takeover wait_for 60 grep -q "device tk0: taken over" /results/tk1.err
capture tk1-switched wait_for 60 grep -q "serving as user tester" /results/tk1.err
threads_of tk1 | result tk1.threads
iface_of tk0 | result tk1.iface
stat_of "$T" rx_packets | result tk1.rx_packets.before
capture tk1-pktgen pktgen "$T" "$ECHO_FRAMES" 60 "$TAKEOVER_MAC" 0
want=$(($(cat /results/tk1.rx_packets.before) + ECHO_FRAMES))
capture tk1-echoed wait_for 30 sh -c "[ \$(cat /sys/class/net/$T/statistics/rx_packets) -ge $want ]"
stop tk1
ls /dev/vduse | result tk1.after.vduse
stat -c '%n %s' /run/vduse/net/tk0.inflight | result tk1.after.log
