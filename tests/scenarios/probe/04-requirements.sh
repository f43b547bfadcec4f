# Requirements, and bad arguments.
capture req-all vduse-probe -q --require 'api-version>=0' --require device=block --require vdpa-bus --require driver=vhost_vdpa
capture req-new vduse-probe -q --require 'api-version>=1' --require device=fs --require feature=suspend
capture req-unmet vduse-probe --require driver=virtio_vdpa --require 'api-version>5'
capture req-bad vduse-probe --require 'api-version>>1'
capture bad-flag vduse-probe --frobnicate
capture no-create vduse-probe --json --no-create
