# The server creates the device ($NAME, $SIZE_MIB MiB) and attaches it itself; the
# kernel's virtio-blk binds.
export RUST_LOG=debug
spawn server ramdisk --name "$NAME" --size-mib "$SIZE_MIB"
capture ready wait_for 60 grep -q READY /results/server.out
capture vda wait_for 60 test -b /dev/vda
cat /sys/block/vda/size | result size
cat /sys/block/vda/serial | result serial
capture probe vduse-probe --json --no-create
