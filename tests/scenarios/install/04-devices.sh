# The devices as the examples describe them.
for d in /sys/block/vd*; do
    [ "$(cat "$d/serial")" = disk0-0001 ] && cat "$d/size" | result disk0.size
done
cat /sys/bus/vdpa/devices/null0/virtio*/net/*/address | result null0.mac
# The virtiofs driver registers the tag once it has probed the device.
capture fs-tag wait_for 60 virtiofs_tag fs0
capture fs-mount mount -t virtiofs fs0 /mnt
cat /mnt/hello | result fs0.hello
echo from-the-guest >/mnt/written
cat /srv/share/written | result fs0.written
capture fs-umount umount /mnt
vduse-blk --version | result version
