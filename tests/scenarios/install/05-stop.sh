# systemd's stop: SIGTERM removes the three devices.
stop blk
stop net
stop fs
ls /dev/vduse | result after.vduse
ls /sys/bus/vdpa/devices | result after.bus
