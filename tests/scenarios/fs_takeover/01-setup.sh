# The shared directory, its modules, `serve` (server number $SERVER, spawned as srvN;
# kill_server counts on) and `taken_over` (by the server of that number).
capture modprobe sh -c 'modprobe vduse && modprobe virtio_vdpa'
mkdir -p /srv/share /mnt/v
mount -t tmpfs share /srv/share
mkdir -p /srv/share/pre/deep
echo deep-data >/srv/share/pre/deep/file
echo soon-moved >/srv/share/pre/moved
SERVER=0
serve() {
    spawn "srv$SERVER" vduse-fs --name tkfs --tag tkfs --shared-dir /srv/share --cache always \
        --num-request-queues 2 --threads 4 "$@"
}
taken_over() {
    wait_for 60 grep -q "device tkfs: taken over" "/results/srv$SERVER.err" &&
        wait_for 60 grep -q "serving /srv/share" "/results/srv$SERVER.err"
}
