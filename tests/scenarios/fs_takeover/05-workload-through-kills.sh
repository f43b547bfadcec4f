# A workload through $KILLS kills.
fio --directory=/mnt/v --ioengine=psync --rw=randwrite --bsrange=4k-64k --size=24M \
    --fsync=16 --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json \
    --name=job0 --name=job1 >/results/fio.out 2>/results/fio.err &
FIO=$!
(
    i=0
    while [ ! -e /tmp/stop ]; do
        d=/mnt/v/loop/d$((i % 10))
        mkdir -p $d || echo "mkdir $i failed"
        echo "file $i" >$d/f$i || echo "write $i failed"
        test "$(cat $d/f$i)" = "file $i" || echo "read $i differs"
        [ $((i % 3)) = 0 ] && { rm -f $d/f$i || echo "rm $i failed"; }
        i=$((i + 1))
    done
    echo $i >/results/loop.count
) >/results/loop.errors 2>&1 &
LOOP=$!
for kill in $(seq "$KILLS"); do
    sleep "$(awk -v seed="$kill$(cut -d. -f2 /proc/uptime)" 'BEGIN { srand(seed); printf "%.1f", 0.3 + 1.2 * rand() }')"
    kill -0 $FIO 2>/dev/null && echo "kill $kill during fio" >>/results/kills
    kill_server
    serve
    taken_over || echo "server $SERVER did not take over" >>/results/kills
done
wait $FIO
echo $? >/results/fio.rc
touch /tmp/stop
wait $LOOP
# Every file the loop kept, as the host sees it.
for f in /srv/share/loop/d*/f*; do
    n=${f##*/f}
    test "$(cat "$f")" = "file $n" || echo "$f: $(cat "$f")"
done | result loop.host
find /srv/share/loop -type f -name 'f*' | wc -l | result loop.kept
cat /results/srv*.err | grep "in flight run again" | result replays
cat /results/srv*.err | grep "found again" | result found
