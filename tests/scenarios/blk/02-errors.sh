# No VDUSE yet: the module is not loaded.
capture no-vduse vduse-blk --name nomod --backing /tmp/nomod.img --size 1M --create
# shellcheck disable=SC2010 # a listing of names the host checks
ls /dev | grep vduse | result no-vduse.dev

mkdir -p /etc/vduse/blk
printf '%s' "$DISK0_YAML" >/etc/vduse/blk/disk0.yaml
printf '%s' "$RO_YAML" >/etc/vduse/blk/ro.yaml
capture print-config vduse-blk --config /etc/vduse/blk/disk0.yaml --num-queues "$DISK0_QUEUES" --print-config
capture check-config vduse-blk --config /etc/vduse/blk/disk0.yaml --num-queues "$DISK0_QUEUES" --check-config

capture modprobe sh -c 'for m in vduse virtio_vdpa virtio_blk ext4 loop; do modprobe $m || exit 1; done'
