# 4 MiB written with O_DIRECT and conv=fsync (a FLUSH), then SIGKILL.
serve
capture up wait_for 60 disk_by_serial vduse-blk-tk0
D=$(disk_by_serial vduse-blk-tk0)
ls /run/vduse/blk | result log.files
dd if=/dev/urandom of=/tmp/flushed bs=1M count=4 2>/dev/null
sha256sum </tmp/flushed | result flushed.sha
capture flushed-write dd if=/tmp/flushed of="/dev/$D" bs=1M oflag=direct conv=fsync
kill_server
head -c 4194304 /tmp/tk0.img | sha256sum | result flushed.backing.sha
ls /dev/vduse | result killed.vduse
