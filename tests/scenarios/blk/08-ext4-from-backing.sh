# The file system, read from the backing file outside the device.
capture fsck e2fsck -fn /tmp/disk0.img
capture loop-mount mount -t ext4 -o ro,loop /tmp/disk0.img /mnt/loop
sums /mnt/loop | result fs.loop.sums
umount /mnt/loop
capture debugfs debugfs -R "dump /big /tmp/big" /tmp/disk0.img
(cd /tmp && sha256sum big) | result fs.debugfs.sums
