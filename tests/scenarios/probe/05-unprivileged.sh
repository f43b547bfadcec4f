# Unprivileged: the control device is root's.
capture user-json as_nobody vduse-probe --json
capture user-get as_nobody vduse-probe get api-version
capture user-env as_nobody vduse-probe --format env
# A group given the control device (a udev rule) may create block and fs, but net needs
# CAP_NET_ADMIN.
chmod 0666 /dev/vduse/control
capture group-json as_nobody vduse-probe --json
chmod 0600 /dev/vduse/control
