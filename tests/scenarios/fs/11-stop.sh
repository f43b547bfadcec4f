# Unmount, SIGTERM, nothing left.
capture umount umount /mnt/v
stop fs0
ls /dev/vduse | result after.vduse
capture after-vdpa vdpa dev show
