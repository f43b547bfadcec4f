# The administrator: one device each, from the installed examples; the fs one shares an
# existing directory (/srv/share, made here; the sed keeps that whatever the example says).
mkdir -p /etc/vduse/blk /etc/vduse/net-null /etc/vduse/fs /var/lib/vduse /srv/share /mnt
cp /usr/share/doc/vduse/examples/vduse-blk.yaml /etc/vduse/blk/disk0.yaml
cp /usr/share/doc/vduse/examples/vduse-net-null.yaml /etc/vduse/net-null/null0.yaml
sed 's|^shared-dir: .*|shared-dir: /srv/share|' /usr/share/doc/vduse/examples/vduse-fs.yaml \
    >/etc/vduse/fs/fs0.yaml
grep '^shared-dir:' /etc/vduse/fs/fs0.yaml | result fs.shared-dir
echo from-the-host >/srv/share/hello
modprobe virtio_blk
modprobe virtio_net
