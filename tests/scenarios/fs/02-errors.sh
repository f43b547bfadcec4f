# Without the module.
capture no-vduse vduse-fs --name nomod --shared-dir /tmp
capture modprobe sh -c 'modprobe vduse && modprobe virtio_vdpa'
