# Served as tester once attached.
capture user-unknown vduse-blk --name asuser --backing /tmp/asuser.img --size 16M --create \
    --user nosuchuser --check-config
spawn asuser vduse-blk --name asuser --backing /tmp/asuser.img --size 16M --create \
    --user tester --serial vduse-blk-asuser
capture asuser-up wait_for 60 disk_by_serial vduse-blk-asuser
A=$(disk_by_serial vduse-blk-asuser)
capture asuser-switched wait_for 60 grep -q "serving as user tester" /results/asuser.err
threads_of asuser | result asuser.threads
capture asuser-write dd if=/tmp/rand of="/dev/$A" bs=1M count=8 oflag=direct
echo 3 >/proc/sys/vm/drop_caches
capture asuser-read dd if="/dev/$A" of=/tmp/asuser.back bs=1M count=8 iflag=direct
sha256sum </tmp/asuser.back | result asuser.sha
stop asuser
ls /dev/vduse | result asuser.after.vduse
capture asuser-after-vdpa vdpa dev show
