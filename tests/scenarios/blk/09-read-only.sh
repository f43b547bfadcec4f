# Read-only, over the same backing.
sha256sum </tmp/disk0.img | result ro.before.sha
# Under systemd (Type=notify): READY=1 comes once the device is on the vdpa bus.
spawn notify notify-listen /run/notify.sock --check /sys/bus/vdpa/devices/ro0
wait_for 60 test -S /run/notify.sock
export NOTIFY_SOCKET=/run/notify.sock
spawn ro0 vduse-blk --config /etc/vduse/blk/ro.yaml
unset NOTIFY_SOCKET
reap notify
capture ro0-up wait_for 60 disk_by_serial vduse-blk-ro0
R=$(disk_by_serial vduse-blk-ro0)
sysfs_of "$R" | result ro0.sysfs
cat /sys/class/vduse/ro0/bounce_size | result ro0.bounce_size
capture ro-write dd if=/tmp/rand of="/dev/$R" bs=4k count=16 oflag=direct
capture ro-discard blkdiscard -f -o 0 -l 1048576 "/dev/$R"
capture ro-mount mount -t ext4 -o ro "/dev/$R" /mnt/disk0
sums /mnt/disk0 | result fs.ro.sums
umount /mnt/disk0
stop ro0
sha256sum </tmp/disk0.img | result ro.after.sha
ls /dev/vduse | result ro0.after.vduse
capture ro0-after-vdpa vdpa dev show
