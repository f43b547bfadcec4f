# The guest runs the cached kernel, with VDUSE's modules loaded when it has them.
capture uname uname -r
capture control test -c /dev/vduse/control
capture class test -d /sys/class/vduse
capture modprobe-vduse modprobe vduse
lsmod | result lsmod
