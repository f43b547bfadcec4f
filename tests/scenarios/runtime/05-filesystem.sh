# A file system, written and read through the device by e2fsprogs, then mounted.
capture mkfs mkfs.ext4 -q -F /dev/vda
capture fs-write debugfs -w -R "write /tmp/pattern pattern" /dev/vda
echo 3 >/proc/sys/vm/drop_caches
capture fsck e2fsck -fn /dev/vda
capture fs-read debugfs -R "dump pattern /tmp/fsback" /dev/vda
md5sum </tmp/fsback | result fs.md5
mkdir -p /mnt/vda
capture mount mount -t ext4 /dev/vda /mnt/vda
cp /tmp/pattern /mnt/vda/copy
capture sync sync
capture umount umount /mnt/vda
capture remount mount -t ext4 -o ro /dev/vda /mnt/vda
md5sum </mnt/vda/copy | result mount.md5
umount /mnt/vda
