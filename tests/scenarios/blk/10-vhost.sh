# Attached for VMs: bound to vhost_vdpa while virtio_vdpa is loaded too.
capture vhost-missing vduse-blk --name vh0 --backing /tmp/vh0.img --size 16M --create --attach vhost
modprobe vhost_vdpa
# READY=1 says the server is done setting up, binding included.
spawn vh0-notify notify-listen /run/vh0.sock
wait_for 60 test -S /run/vh0.sock
export NOTIFY_SOCKET=/run/vh0.sock
spawn vh0 vduse-blk --name vh0 --backing /tmp/vh0.img --size 16M --create --attach vhost --serial vduse-blk-vh0
unset NOTIFY_SOCKET
capture vh0-up reap vh0-notify
basename "$(readlink /sys/bus/vdpa/devices/vh0/driver)" | result vh0.driver
ls /sys/bus/vdpa/devices/vh0 | result vh0.children
capture vh0-no-disk sh -c '! grep -qs vduse-blk-vh0 /sys/block/*/serial'
stop vh0
ls /dev/vduse | result vh0.after.vduse
