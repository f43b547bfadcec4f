# Mounted, files held, then SIGKILL.
serve
capture tag wait_for 60 virtiofs_tag tkfs
capture mount mount -t virtiofs tkfs /mnt/v
# The journal comes with the filesystem threads, after the device.
capture serving wait_for 60 grep -q "serving /srv/share" /results/srv0.err
capture deep-before cat /mnt/v/pre/deep/file
# Listed once a request has been answered: mount(2) returns before FUSE INIT is (the
# kernel sends INIT in the background), and INIT rewrites the journal through NAME.new.
ls /run/vduse/fs | result log.files
capture moved-before cat /mnt/v/pre/moved
spawn holder sh -c 'exec 3>>/mnt/v/held; echo before >&3;
    while [ ! -e /tmp/go ]; do sleep 0.1; done; echo after >&3'
capture holder-wrote wait_for 30 grep -q before /srv/share/held
kill_server
ls /dev/vduse | result killed.vduse
mv /srv/share/pre/moved /srv/share/pre/elsewhere
