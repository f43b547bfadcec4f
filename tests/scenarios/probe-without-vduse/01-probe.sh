# A kernel without VDUSE (6.1): every output says so.
capture json vduse-probe --json
capture env vduse-probe --format env
capture human vduse-probe
capture get-available vduse-probe get available
capture get-api vduse-probe get api-version
capture require vduse-probe -q --require available
capture modprobe modprobe vduse
