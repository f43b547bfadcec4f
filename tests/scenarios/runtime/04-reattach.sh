# Re-initialisation: detach (the driver resets the device), attach (DRIVER_OK again).
capture del vdpa dev del "$NAME"
capture gone wait_for 60 sh -c '! test -b /dev/vda'
capture add vdpa dev add name "$NAME" mgmtdev vduse
capture vda-again wait_for 60 test -b /dev/vda
capture read-again dd if=/dev/vda of=/tmp/back2 bs=1M count=4 iflag=direct
md5sum </tmp/back2 | result back-again.md5
