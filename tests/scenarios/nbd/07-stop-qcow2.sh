# SIGTERM; then the qcow2 image, converted, outside the device.
stop nbd1
ls /dev/vduse | result nbd1.after.vduse
capture nbd1-after-vdpa vdpa dev show
stop qnbd-q2
capture q-convert qemu-img convert -O raw /tmp/disk.qcow2 /tmp/qcow2.raw
fs_check qcow2 /tmp/qcow2.raw
