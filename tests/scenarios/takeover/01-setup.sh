# The device's configuration file ($CONFIG), its modules, and `serve`, which starts server
# number $SERVER (spawned as srvN; kill_server counts on).
mkdir -p /etc/vduse/blk
printf '%s' "$CONFIG" >/etc/vduse/blk/tk0.yaml
capture modprobe sh -c 'for m in vduse virtio_vdpa virtio_blk; do modprobe $m || exit 1; done'
SERVER=0
serve() {
    spawn "srv$SERVER" vduse-blk --config /etc/vduse/blk/tk0.yaml
}
