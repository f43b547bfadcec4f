# A server serving as tester, killed and taken over by another serving as tester.
serve_as_tester() {
    spawn "usr$1" vduse-blk --name tku --backing /tmp/tku.img --size 64M --create \
        --serial vduse-blk-tku --user tester
}
serve_as_tester 0
capture user-up wait_for 60 disk_by_serial vduse-blk-tku
capture user-switched wait_for 60 grep -q "serving as user tester" /results/usr0.err
U=$(disk_by_serial vduse-blk-tku)
capture user-flushed dd if=/tmp/flushed of="/dev/$U" bs=1M oflag=direct conv=fsync
stop usr0 KILL
serve_as_tester 1
capture user-takeover taken_over_as usr1 tku tester
threads_of usr1 | result user.threads
capture user-read dd if="/dev/$U" of=/tmp/flushed.user bs=1M count=4 iflag=direct
sha256sum </tmp/flushed.user | result user.read.sha
capture user-write dd if=/tmp/flushed of="/dev/$U" bs=1M seek=8 oflag=direct conv=fsync
dd if=/tmp/tku.img bs=1M skip=8 count=4 2>/dev/null | sha256sum | result user.backing.sha
stop usr1
ls /dev/vduse | result user.end.vduse
stat -c '%n %s' /run/vduse/blk/tku.inflight | result user.end.log
