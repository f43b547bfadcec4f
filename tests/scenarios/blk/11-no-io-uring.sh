# io_uring disabled by the administrator (EPERM from io_uring_setup): the
# io-uring engine falls back to the thread pool, and the disk still works.
echo 2 >/proc/sys/kernel/io_uring_disabled
spawn nouring vduse-blk --name nouring --backing /tmp/nouring.img --size 16M --create \
    --io-engine io-uring --serial vduse-blk-nouring
capture nouring-up wait_for 60 disk_by_serial vduse-blk-nouring
N=$(disk_by_serial vduse-blk-nouring)
capture nouring-write dd if=/tmp/rand of="/dev/$N" bs=1M count=8 oflag=direct
capture nouring-read dd if="/dev/$N" of=/tmp/nouring.back bs=1M count=8 iflag=direct
sha256sum </tmp/nouring.back | result nouring.sha
stop nouring
echo 0 >/proc/sys/kernel/io_uring_disabled
ls /dev/vduse | result nouring.after.vduse
