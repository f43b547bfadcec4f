# The same configuration takes the device over; a second server meanwhile is refused.
serve
capture takeover wait_for 60 grep -q "device tk0: taken over" "/results/srv$SERVER.err"
capture served vduse-blk --config /etc/vduse/blk/tk0.yaml
capture flushed-read dd if="/dev/$D" of=/tmp/flushed.dev bs=1M count=4 iflag=direct
sha256sum </tmp/flushed.dev | result flushed.dev.sha
