# Taken over.
serve
capture takeover taken_over
capture served vduse-fs --name tkfs --tag tkfs --shared-dir /srv/share --cache always \
    --num-request-queues 2
capture deep-after cat /mnt/v/pre/deep/file
capture moved-after cat /mnt/v/pre/moved
touch /tmp/go
capture holder-done reap holder
cat /srv/share/held | result held
