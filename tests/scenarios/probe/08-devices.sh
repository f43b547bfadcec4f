# Existing devices: one served, one attached and served by nobody, one not attached.
spawn served vduse-testdev create served --attach --hold
capture served-ready wait_for 60 grep -q READY /results/served.out
capture create-ghost vduse-testdev create ghost
echo 2 >/sys/class/vduse/ghost/msg_timeout
capture attach-ghost vduse-testdev attach ghost
capture create-spare vduse-testdev create spare
capture devices-json vduse-probe --json
capture devices-env vduse-probe --format env
capture devices-human vduse-probe
capture devices-get vduse-probe get orphaned-devices
capture devices-user as_nobody vduse-probe --json
# vduse-probe remove: a served device, a name no device has and an unprivileged caller
# are refused; the orphan is detached and destroyed, the unattached one destroyed.
capture remove-refused vduse-probe remove served
capture remove-none vduse-probe remove nosuch
capture remove-user as_nobody vduse-probe remove spare
stop served
capture remove-served vduse-testdev remove served
capture remove-ghost vduse-probe remove ghost
capture remove-spare vduse-probe remove spare
capture after-remove-vdpa vdpa dev show
ls /dev/vduse | result final
