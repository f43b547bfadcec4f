# Unmount, SIGTERM: nothing left.
capture umount umount /mnt/v
stop "srv$SERVER"
echo "$SERVER" | result last
ls /dev/vduse | result end.vduse
ls /run/vduse/fs | result end.log.files
