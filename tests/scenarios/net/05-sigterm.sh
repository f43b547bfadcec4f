# SIGTERM.
stop net0
ls /sys/class/net | result net0.after.net
ls /dev/vduse | result net0.after.vduse
capture net0-after-vdpa vdpa dev show
