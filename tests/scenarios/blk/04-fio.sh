# fio, verified, from each vCPU (so through each queue).
# One job per vCPU, pinned to it, each on its own $FIO_JOB_MIB MiB of the disk.
set --
cpu=0
while [ "$cpu" -lt "$DISK0_QUEUES" ]; do
    set -- "$@" --name="cpu$cpu" --cpus_allowed="$cpu" --offset="$((cpu * FIO_JOB_MIB))M"
    cpu=$((cpu + 1))
done
# The counters before (SIGUSR1 prints them as a line of JSON on stdout).
kill -USR1 "$(cat /run/vduse-test/disk0.pid)"
capture counters-before wait_for 10 grep -q '"event":"signal"' /results/disk0.out
capture fio fio --filename="/dev/$D" --direct=1 --ioengine=libaio --iodepth=8 \
    --rw=randwrite --bsrange=4k-64k --size="${FIO_JOB_MIB}M" \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json "$@"
# Which CPUs submit to which queue: blk-mq sends a CPU's requests to its queue.
for q in /sys/block/"$D"/mq/*; do
    echo "${q##*/} $(cat "$q/cpu_list")"
done | result fio.cpu_lists
# SIGUSR1: the server prints the counters, logs each queue's ring state and goes on serving.
kill -USR1 "$(cat /run/vduse-test/disk0.pid)"
capture counters-after wait_for 10 sh -c '[ "$(grep -c "\"event\":\"signal\"" /results/disk0.out)" -ge 2 ]'
capture ring-state wait_for 10 sh -c '[ "$(grep -c "avail ring: idx" /results/disk0.err)" -ge '"$DISK0_QUEUES"' ]'
# The server's threads: one worker per queue.
threads_of disk0 | result disk0.threads
