# Root: the matrix.
modprobe vduse
modprobe vhost_vdpa
capture root-json vduse-probe --json
capture root-env vduse-probe --format env
capture root-human vduse-probe
capture get-api vduse-probe get api-version
capture get-features vduse-probe get features
capture get-types vduse-probe get device-types
