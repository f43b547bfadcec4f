# Data both ways, and concurrent writers.
op guest-64m 'dd if=/dev/urandom of=guest-64m bs=1M count=64 2>/dev/null'
sha256sum </mnt/v/guest-64m | result guest-64m.guest.sha
sha256sum </srv/export/guest-64m | result guest-64m.host.sha
echo 3 >/proc/sys/vm/drop_caches
sha256sum </mnt/v/host-64m | result host-64m.guest.sha
stat -c %s /mnt/v/host-64m /mnt/v/guest-64m | result data.sizes
# 1 MiB each (busybox head knows no size suffix).
for i in 0 1 2 3; do dd if=/dev/urandom of=/tmp/chunk.$i bs=64k count=16 2>/dev/null; done
op concurrent 'for i in 0 1 2 3; do
        dd if=/dev/urandom of=cw.$i bs=64k count=32 2>/dev/null &
        dd if=/tmp/chunk.$i of=shared bs=64k seek=$((i * 16)) conv=notrunc 2>/dev/null &
    done; wait'
for i in 0 1 2 3; do
    echo "$(sha256sum </mnt/v/cw.$i) $(sha256sum </srv/export/cw.$i)"
done | result concurrent.files
cat /tmp/chunk.0 /tmp/chunk.1 /tmp/chunk.2 /tmp/chunk.3 | sha256sum | result concurrent.shared.expected
sha256sum </srv/export/shared | result concurrent.shared.host
stat -c %s /srv/export/shared | result concurrent.shared.size
# Keeps 08-escapes.sh's recursive search of the mount short.
rm /mnt/v/guest-64m /mnt/v/host-64m /mnt/v/cw.* /mnt/v/shared
