# qcow2 image over TCP on the loopback, short timeout.
capture qcow2-create qemu-img create -q -f qcow2 /tmp/disk.qcow2 "${IMAGE_MIB}M"
Q_NBD="qemu-nbd --persistent --shared=4 --format=qcow2 --discard=unmap --bind=127.0.0.1 --port=10809 /tmp/disk.qcow2"
# shellcheck disable=SC2086 # Q_NBD is a command line
spawn qnbd-q $Q_NBD
capture q-listen wait_for 60 sh -c 'grep -q ":2A39 " /proc/net/tcp' || why qnbd-q
spawn nbd1 vduse-blk --name nbd1 --nbd-uri nbd://127.0.0.1 --nbd-timeout "$TIMEOUT_S" --serial vduse-nbd1
capture nbd1-up wait_for 60 disk_by_serial vduse-nbd1
Q=$(disk_by_serial vduse-nbd1)
echo "size=$(cat "/sys/block/$Q/size")" | result nbd1.sysfs
fs_write qcow2 "$Q"
stop qnbd-q
echo "vduse-tests: qemu-nbd stopped at $(cut -d' ' -f1 /proc/uptime) s"
start=$(uptime_ms)
capture q-down-read dd if="/dev/$Q" of=/dev/null bs=4k count=1 skip=100 iflag=direct
echo $(( $(uptime_ms) - start )) | result q-down-read.ms
# shellcheck disable=SC2086 # Q_NBD is a command line
spawn qnbd-q2 $Q_NBD
capture q-back-read wait_for 60 dd if="/dev/$Q" of=/dev/null bs=4k count=1 skip=200 iflag=direct
capture q-back-fs sh -c "mount -t ext4 -o ro /dev/$Q /mnt/qcow2 && cd /mnt/qcow2 && sha256sum $FILES"
umount /mnt/qcow2
