# fio, verified, from each vCPU (so through each queue).
# One job per vCPU, each on its own $FIO_JOB_MIB MiB of the disk.
capture fio fio --filename="/dev/$D" --direct=1 --ioengine=libaio --iodepth=8 \
    --rw=randwrite --bsrange=4k-64k --size="${FIO_JOB_MIB}M" \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json \
    --name=cpu0 --cpus_allowed=0 --offset=0 --name=cpu1 --cpus_allowed=1 --offset="${FIO_JOB_MIB}M"
# Which CPUs submit to which queue: blk-mq sends a CPU's requests to its queue.
for q in /sys/block/"$D"/mq/*; do
    echo "${q##*/} $(cat "$q/cpu_list")"
done | result fio.cpu_lists
# SIGUSR1: the server logs each queue's ring state and goes on serving.
kill -USR1 "$(cat /run/vduse-test/disk0.pid)"
capture ring-state wait_for 10 sh -c '[ "$(grep -c "avail ring: idx" /results/disk0.err)" -ge '"$DISK0_QUEUES"' ]'
