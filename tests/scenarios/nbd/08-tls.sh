# TLS: qemu-nbd with x509 credentials (made on the host) on TCP, and nbds://.
truncate -s 32M /tmp/tls.img
spawn qnbd-tls qemu-nbd --persistent --format=raw \
    --object tls-creds-x509,id=tls0,endpoint=server,verify-peer=off,dir=/etc/nbd-tls/server \
    --tls-creds=tls0 --bind=127.0.0.1 --port=10810 /tmp/tls.img
capture tls-listen wait_for 60 sh -c 'grep -q ":2A3A " /proc/net/tcp' || why qnbd-tls
capture tls-plain vduse-blk --name nbd2 --nbd-uri nbd://127.0.0.1:10810 --check-config
spawn nbd2 vduse-blk --name nbd2 --nbd-uri nbds://127.0.0.1:10810 \
    --nbd-tls-ca /etc/nbd-tls/ca-cert.pem --serial vduse-nbd2
capture nbd2-up wait_for 60 disk_by_serial vduse-nbd2
T=$(disk_by_serial vduse-nbd2)
dd if=/dev/urandom of=/tmp/tls.data bs=1M count=8 2>/dev/null
sha256sum </tmp/tls.data | result tls.data.sha
capture tls-write dd if=/tmp/tls.data of="/dev/$T" bs=1M oflag=direct
echo 3 >/proc/sys/vm/drop_caches
capture tls-read dd if="/dev/$T" of=/tmp/tls.back bs=1M count=8 iflag=direct
sha256sum </tmp/tls.back | result tls.back.sha
stop nbd2
ls /dev/vduse | result nbd2.after.vduse
capture nbd2-after-vdpa vdpa dev show
stop qnbd-tls
head -c 8388608 /tmp/tls.img | sha256sum | result tls.image.sha
