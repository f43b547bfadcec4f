# Online resize on SIGHUP: the backing file grows under a mounted ext4 while fio verifies
# on it, then a larger `size` extends the file; refusals leave the disk as it was; after a
# crash, the server taking the device over goes on from the grown size.
GROW_YAML='name: grow0\nbacking: /tmp/grow0.img\nlogical-block-size: 4096\nserial: vduse-blk-grow0\n'
truncate -s 64M /tmp/grow0.img
# shellcheck disable=SC2059 # the format is the YAML, with its \n
printf "$GROW_YAML" >/etc/vduse/blk/grow0.yaml
spawn grow0 vduse-blk --config /etc/vduse/blk/grow0.yaml
capture grow0-up wait_for 60 disk_by_serial vduse-blk-grow0
G=$(disk_by_serial vduse-blk-grow0)
G_PID=$(cat /run/vduse-test/grow0.pid)
result grow.size.start <"/sys/block/$G/size"
# size_is SECTORS: whether the guest's disk has that many 512-byte sectors.
size_is() { [ "$(cat "/sys/block/$G/size")" = "$1" ]; }
# fs_kib: the mounted file system's size in KiB.
fs_kib() { df -k /mnt/grow | awk 'NR == 2 { print $2 }'; }
capture grow-mkfs mkfs.ext4 -q -F "/dev/$G"
mkdir -p /mnt/grow
capture grow-mount mount -t ext4 "/dev/$G" /mnt/grow
fs_kib | result grow.fs.start
fio --name=grow --directory=/mnt/grow --size=16M --rw=randwrite --bs=4k --direct=1 \
    --ioengine=psync --verify=crc32c --verify_backlog=64 --verify_fatal=1 \
    --time_based --runtime=12 --output-format=json >/results/grow-fio.out 2>/results/grow-fio.err &
FIO=$!
sleep 2

# 1. The backing file grows by 32 MiB; SIGHUP; the mounted ext4 grows into it.
truncate -s 96M /tmp/grow0.img
kill -HUP "$G_PID"
capture grow-seen wait_for 30 size_is $((96 * 2048))
capture grow-resize2fs resize2fs "/dev/$G"
fs_kib | result grow.fs.grown
wait "$FIO"
echo $? >/results/grow-fio.rc

# 2. A larger `size`, with `create: true`: the server extends the file itself.
# shellcheck disable=SC2059
printf "${GROW_YAML}size: 128M\ncreate: true\n" >/etc/vduse/blk/grow0.yaml
kill -HUP "$G_PID"
capture grow-size-seen wait_for 30 size_is $((128 * 2048))
stat -c %s /tmp/grow0.img | result grow.file.size

# 3. Refused, each with its log line, the size left as it was: a smaller size, one that
# is not whole 4096-byte blocks, a key that cannot change while served.
# refused N YAML_TAIL: SIGHUP with the configuration plus YAML_TAIL; wait for refusal N.
refused() {
    # shellcheck disable=SC2059
    printf "${GROW_YAML}create: true\n$2" >/etc/vduse/blk/grow0.yaml
    kill -HUP "$G_PID"
    wait_for 30 sh -c "[ \"\$(grep -c 'reload refused' /results/grow0.err)\" -ge $1 ]"
}
capture grow-refused-shrink refused 1 'size: 64M\n'
capture grow-refused-partial refused 2 'size: 134218240\n'
capture grow-refused-queues refused 3 'size: 128M\nnum-queues: 2\n'
result grow.size.refused <"/sys/block/$G/size"
stat -c %s /tmp/grow0.img | result grow.file.refused

# 4. Killed after the disk grew, the server's successor takes the device over at the grown
# size (the in-flight log has the new config space), and grows it again.
# shellcheck disable=SC2059
printf "${GROW_YAML}size: 128M\ncreate: true\n" >/etc/vduse/blk/grow0.yaml
kill -KILL "$G_PID"
reap grow0
# With counters every second (a flag: reloads keep it).
spawn grow1 vduse-blk --config /etc/vduse/blk/grow0.yaml --stats-interval 1
# Without the successor, I/O on the mounted file system would wait for good: the checks
# name the refusal instead.
if capture grow1-took-over wait_for 60 grep -q "device grow0: taken over" /results/grow1.err; then
    # shellcheck disable=SC2059
    printf "${GROW_YAML}size: 160M\ncreate: true\n" >/etc/vduse/blk/grow0.yaml
    kill -HUP "$(cat /run/vduse-test/grow1.pid)"
    capture grow1-grown wait_for 30 size_is $((160 * 2048))

    # Still served: a file written and read back through the grown file system.
    capture grow-write dd if=/dev/urandom of=/mnt/grow/after bs=1M count=40
    capture grow-sync sync
    capture grow-umount umount /mnt/grow
    capture grow-fsck e2fsck -fn "/dev/$G"
    sleep 2
    stop grow1
    ls /dev/vduse | result grow1.after.vduse
    capture grow1-after-vdpa vdpa dev show
fi
