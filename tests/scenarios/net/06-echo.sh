# Echo mode: frames of each size of $ECHO_JOBS come back.
spawn echo0 vduse-net-null --name echo0 --mode echo --mac "$ECHO_MAC" --mtu 9000 --stats-interval 1 \
    --bounce-size 8M --user tester
capture echo0-up wait_for 60 iface_of echo0
capture echo0-switched wait_for 60 grep -q "serving as user tester" /results/echo0.err
threads_of echo0 | result echo0.threads
cat /sys/class/vduse/echo0/bounce_size | result echo0.bounce_size
E=$(iface_of echo0)
capture echo0-link ip link set "$E" up
capture echo0-carrier wait_for 60 carrier_is "$E" 1
stat_of "$E" rx_packets | result echo.rx_packets.before
n=0
# shellcheck disable=SC2086 # ECHO_JOBS is a list of SIZE:DELAY_NS words
for job in $ECHO_JOBS; do
    size=${job%:*}
    n=$((n + 1))
    capture "echo-pktgen-$size" pktgen "$E" "$ECHO_FRAMES" "$size" "$ECHO_MAC" "${job#*:}"
    want=$(($(cat /results/echo.rx_packets.before) + n * ECHO_FRAMES))
    wait_for 15 sh -c "[ \$(cat /sys/class/net/$E/statistics/rx_packets) -ge $want ]" ||
        echo "vduse-net-test: $size-byte frames: not all came back"
    stat_of "$E" rx_packets | result "echo.rx_packets.$size"
    stat_of "$E" rx_bytes | result "echo.rx_bytes.$size"
    ip -s -s link show "$E" | result "echo.link.$size"
    capture "echo-counters-$size" counters echo0 "$n"
done
stop echo0
ls /dev/vduse | result echo0.after.vduse
capture echo0-after-vdpa vdpa dev show
