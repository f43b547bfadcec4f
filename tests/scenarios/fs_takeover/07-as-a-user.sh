# A server serving as tester, killed and taken over by another serving as tester.
mkdir -p /srv/asuser /mnt/u
chown tester:tester /srv/asuser
serve_as_tester() {
    spawn "usr$1" vduse-fs --name tkus --tag tkus --shared-dir /srv/asuser --cache always \
        --user tester
}
serve_as_tester 0
capture user-tag wait_for 60 virtiofs_tag tkus
capture user-mount mount -t virtiofs tkus /mnt/u
capture user-switched wait_for 60 grep -q "serving as user tester" /results/usr0.err
spawn uholder sh -c 'exec 3>>/mnt/u/held; echo before >&3;
    while [ ! -e /tmp/ugo ]; do sleep 0.1; done; echo after >&3'
capture uholder-wrote wait_for 30 grep -q before /srv/asuser/held
stop usr0 KILL
serve_as_tester 1
capture user-takeover taken_over_as usr1 tkus tester
threads_of usr1 | result user.threads
touch /tmp/ugo
capture uholder-done reap uholder
cat /srv/asuser/held | result user.held
capture user-create sh -ec 'echo new >/mnt/u/new; stat -c "%u %g" /srv/asuser/held /srv/asuser/new'
capture user-umount umount /mnt/u
stop usr1
ls /dev/vduse | result user.end.vduse
stat -c '%n %s' /run/vduse/fs/tkus.* | result user.end.logs
