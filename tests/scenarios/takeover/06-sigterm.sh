# SIGTERM: the device and its log go.
stop "srv$SERVER"
echo "$SERVER" | result last
ls /dev/vduse | result end.vduse
ls /run/vduse/blk | result end.log.files
