# fio while qemu-nbd is killed and started again.
spawn fio fio --filename="/dev/$D" --direct=1 --ioengine=libaio --iodepth=16 \
    --rw=randwrite --bsrange=4k-64k --size=32M --offset=64M \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json \
    --name=cpu0 --cpus_allowed=0 --name=cpu1 --cpus_allowed=1 --offset=96M
sleep 2
kill -0 "$(cat /run/vduse-test/fio.pid)" && echo running | result fio.at-kill
stop qnbd-raw KILL
echo "vduse-tests: qemu-nbd killed at $(cut -d' ' -f1 /proc/uptime) s"
sleep 2
# shellcheck disable=SC2086 # RAW_NBD is a command line
spawn qnbd-raw2 $RAW_NBD
echo "vduse-tests: qemu-nbd started again at $(cut -d' ' -f1 /proc/uptime) s"
capture fio-done reap fio
cp /results/fio.out /results/fio.json
