# The export, the server in its own namespace, the mount.
mkdir -p /srv/export /srv/outside /mnt/v /mnt/ro /etc/vduse/fs
mount -t tmpfs export /srv/export
echo from-host >/srv/export/host.txt
dd if=/dev/urandom of=/srv/export/host-64m bs=1M count=64 2>/dev/null
sha256sum </srv/export/host-64m | result host-64m.host.sha
ln -s ../outside/secret /srv/export/rel-link
ln -s /srv/outside/secret /srv/export/abs-link
ln -s .. /srv/export/up
mkdir /srv/export/sub
mount -t tmpfs sub /srv/export/sub
echo in-sub >/srv/export/sub/f
printf '%s' "$FS0_YAML" >/etc/vduse/fs/fs0.yaml
capture check-config vduse-fs --config /etc/vduse/fs/fs0.yaml --check-config
spawn notify notify-listen /run/notify.sock --check /sys/bus/vdpa/devices/fs0
wait_for 60 test -S /run/notify.sock
export NOTIFY_SOCKET=/run/notify.sock
# A soft limit of 256 open files, which the server raises (05-operations.sh).
spawn fs0 unshare -m sh -c 'ulimit -Sn 256 && mount -t tmpfs outside /srv/outside &&
    echo '"$SECRET"' >/srv/outside/secret && cat /srv/outside/secret >/results/secret.server-view &&
    exec vduse-fs --config /etc/vduse/fs/fs0.yaml --announce-submounts --xattr'
unset NOTIFY_SOCKET
capture fs0-ready reap notify
capture fs0-tag wait_for 60 virtiofs_tag share0
capture mount mount -t virtiofs share0 /mnt/v
ls /srv/outside | result secret.guest-view
