# Servers of another configuration find the device and leave it alone.
capture other vduse-blk --config /etc/vduse/blk/tk0.yaml --size 128M
capture other-backing vduse-blk --config /etc/vduse/blk/tk0.yaml --backing /tmp/other.img
capture nolog vduse-blk --config /etc/vduse/blk/tk0.yaml --inflight-log none
ls /dev/vduse | result other.vduse
