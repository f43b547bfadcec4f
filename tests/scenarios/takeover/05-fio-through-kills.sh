# fio, verified, from two jobs pinned to the two vCPUs, through $KILLS SIGKILLs.
fio --filename="/dev/$D" --direct=1 --ioengine=libaio --iodepth=16 \
    --rw=randwrite --bsrange=4k-32k --size="${FIO_JOB_MIB}M" \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json \
    --name=cpu0 --cpus_allowed=0 --offset=0 --name=cpu1 --cpus_allowed=1 \
    --offset="${FIO_JOB_MIB}M" >/results/fio.out 2>/results/fio.err &
FIO=$!
for kill in $(seq "$KILLS"); do
    # 0.3 to 1.5 s into each server's life.
    sleep "$(awk -v seed="$kill$(cut -d. -f2 /proc/uptime)" 'BEGIN { srand(seed); printf "%.1f", 0.3 + 1.2 * rand() }')"
    kill -0 $FIO 2>/dev/null && echo "kill $kill during fio" >>/results/kills
    kill_server
    serve
    wait_for 60 grep -q "device tk0: taken over" "/results/srv$SERVER.err" \
        || echo "server $SERVER did not take over" >>/results/kills
done
wait $FIO
echo $? >/results/fio.rc
cat /results/srv*.err | grep "in flight run again" | result replays
