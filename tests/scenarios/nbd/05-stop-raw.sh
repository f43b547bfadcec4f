# SIGTERM; then the raw image outside the device.
stop nbd0
ls /dev/vduse | result nbd0.after.vduse
capture nbd0-after-vdpa vdpa dev show
stop qnbd-raw2
fs_check raw /tmp/raw.img
