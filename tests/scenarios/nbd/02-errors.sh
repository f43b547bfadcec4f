# Errors: no server at the socket, no such export; --check-config.
truncate -s "${IMAGE_MIB}M" /tmp/raw.img
RAW_URI='nbd+unix:///disk?socket=/run/nbd/raw.sock'
capture no-server vduse-blk --name nbd0 --nbd-uri "$RAW_URI"
RAW_NBD="qemu-nbd --persistent --shared=4 --format=raw --discard=unmap --export-name=disk --socket=/run/nbd/raw.sock /tmp/raw.img"
# shellcheck disable=SC2086 # RAW_NBD is a command line
spawn qnbd-raw $RAW_NBD
capture raw-socket wait_for 60 test -S /run/nbd/raw.sock || why qnbd-raw
capture no-export vduse-blk --name nbd0 --nbd-uri 'nbd+unix:///other?socket=/run/nbd/raw.sock'
capture raw-check vduse-blk --name nbd0 --nbd-uri "$RAW_URI" --check-config
ls /dev/vduse | result errors.vduse
