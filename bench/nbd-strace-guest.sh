# shellcheck shell=dash
# One-off check behind BENCHMARKS.md ("Block over NBD"): the system calls vduse-blk
# makes per I/O over NBD. Runs in a guest booted by tests/vm-run:
#
#   tests/vm-run --release --kernel 7.3 --memory 1500 --modules vduse,virtio_vdpa,virtio_blk \
#       --host strace --host fio --host qemu-nbd \
#       --file bench/nbd-strace-guest.sh:/x.sh --console --timeout 200 -- sh /x.sh
#
# It prints fio's read IOPS (8 s of 4k random reads at depth 16) and `strace -f -c` of the
# server over that time; calls per I/O = total calls / (IOPS x 8).
exec >/dev/console 2>&1
dd if=/dev/zero of=/tmp/disk.img bs=1M count=256 2>/dev/null
qemu-nbd --persistent --format=raw --socket=/tmp/nbd.sock /tmp/disk.img &
sleep 1
vduse-blk --name n0 --nbd-uri 'nbd+unix:///?socket=/tmp/nbd.sock' --serial s &
server=$!
sleep 3
dev=$(ls /sys/bus/vdpa/devices/n0/virtio*/block/)
strace -f -c -p $server -o /tmp/strace.out &
tracer=$!
sleep 1
echo "read IOPS: $(fio --name=r --filename=/dev/"$dev" --ioengine=libaio --direct=1 \
    --rw=randread --bs=4k --iodepth=16 --time_based --runtime=8 --output-format=terse |
    cut -d';' -f8)"
kill -INT $tracer
sleep 2
cat /tmp/strace.out
kill $server
sleep 1
