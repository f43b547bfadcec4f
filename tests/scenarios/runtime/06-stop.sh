# SIGTERM: the server detaches, stops, destroys its device and exits 0.
stop server
ls /dev/vduse | result after.vduse
capture after-vdpa vdpa dev show
