# The device, from the YAML file and a flag.
spawn disk0 vduse-blk --config /etc/vduse/blk/disk0.yaml --num-queues "$DISK0_QUEUES"
capture disk0-up wait_for 60 disk_by_serial vduse-blk-disk0
D=$(disk_by_serial vduse-blk-disk0)
sysfs_of "$D" | result disk0.sysfs
cat /sys/class/vduse/disk0/bounce_size | result disk0.bounce_size

# Error paths while it runs: the same configuration again, a missing backing.
capture dup vduse-blk --config /etc/vduse/blk/disk0.yaml --num-queues "$DISK0_QUEUES"
capture missing vduse-blk --name missing --backing /tmp/missing.img
ls /dev/vduse | result errors.vduse
