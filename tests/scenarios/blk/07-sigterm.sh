# SIGTERM.
stop disk0
ls /dev/vduse | result disk0.after.vduse
ls /sys/bus/vdpa/devices | result disk0.after.bus
# shellcheck disable=SC2010 # a listing of names the host checks
ls /sys/block | grep vd | result disk0.after.block
capture disk0-after-vdpa vdpa dev show
