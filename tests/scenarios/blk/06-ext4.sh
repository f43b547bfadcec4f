# ext4 through the device.
capture mkfs mkfs.ext4 -q -F "/dev/$D"
mkdir -p /mnt/disk0 /mnt/loop
capture mount mount -t ext4 "/dev/$D" /mnt/disk0
dd if=/dev/urandom of=/mnt/disk0/big bs=1M count=8 2>/dev/null
echo "hello from vduse-blk" >/mnt/disk0/small
mkdir /mnt/disk0/dir && seq 1 2000 >/mnt/disk0/dir/numbers
capture fs-sync sync
sums /mnt/disk0 | result fs.device.sums
capture umount umount /mnt/disk0
