# A kernel whose VDUSE takes no virtio-fs devices (6.12): refused, nothing left behind.
capture fs vduse-fs --name fs0 --shared-dir /tmp
ls /dev/vduse | result after.vduse
