# Raw image, Unix socket, two queues.
spawn nbd0 vduse-blk --name nbd0 --nbd-uri "$RAW_URI" --num-queues 2 --serial vduse-nbd0
capture nbd0-up wait_for 60 disk_by_serial vduse-nbd0
D=$(disk_by_serial vduse-nbd0)
for f in size ro serial; do echo "$f=$(cat "/sys/block/$D/$f")"; done | result nbd0.sysfs
echo "mq=$(ls "/sys/block/$D/mq" | wc -l)" >>/results/nbd0.sysfs
fs_write raw "$D"
