# Refusals.
mkdir -p /srv/other
capture other vduse-fs --name tkfs --tag tkfs --shared-dir /srv/other --cache always \
    --num-request-queues 2
capture nolog vduse-fs --name tkfs --tag tkfs --shared-dir /srv/share --cache always \
    --num-request-queues 2 --inflight-log none
ls /dev/vduse | result other.vduse
