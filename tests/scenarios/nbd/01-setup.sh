# Modules, and the helpers of the steps: uptime_ms, fs_write and fs_check.
uptime_ms() {
    awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime
}
FILES="big small dir/numbers"
# sums DIR: sha256sum of the $FILES under DIR.
sums() {
    # shellcheck disable=SC2086 # FILES is a list of names
    (cd "$1" && sha256sum $FILES)
}
# fs_write NAME DEV: ext4 on DEV with a few files; their sums go to result NAME.sums.
fs_write() {
    capture "$1-mkfs" mkfs.ext4 -q -F "/dev/$2"
    mkdir -p "/mnt/$1"
    capture "$1-mount" mount -t ext4 "/dev/$2" "/mnt/$1"
    dd if=/dev/urandom of="/mnt/$1/big" bs=1M count=8 2>/dev/null
    echo "hello from vduse-blk over NBD" >"/mnt/$1/small"
    mkdir "/mnt/$1/dir" && seq 1 5000 >"/mnt/$1/dir/numbers"
    capture "$1-sync" sync
    sums "/mnt/$1" | result "$1.sums"
    capture "$1-umount" umount "/mnt/$1"
    echo 3 >/proc/sys/vm/drop_caches
    capture "$1-remount" mount -t ext4 -o ro "/dev/$2" "/mnt/$1"
    sums "/mnt/$1" | result "$1.reread.sums"
    umount "/mnt/$1"
}
# fs_check NAME IMAGE: the file system in the raw IMAGE, outside the device.
fs_check() {
    capture "$1-fsck" e2fsck -fn "$2"
    mkdir -p "/mnt/$1-loop"
    capture "$1-loop" mount -t ext4 -o ro,loop "$2" "/mnt/$1-loop"
    sums "/mnt/$1-loop" | result "$1.loop.sums"
    umount "/mnt/$1-loop"
}

capture modprobe sh -c 'for m in vduse virtio_vdpa virtio_blk ext4 loop; do modprobe $m || exit 1; done'
mkdir -p /run/nbd
