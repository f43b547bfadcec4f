# Serving as one user.
mkdir -p /srv/asuser /mnt/u
chown tester:tester /srv/asuser
# Writable for all, so the guest's own permission check (virtiofs mounts with
# default_permissions) lets nobody create; the host's is then the server's.
chmod 777 /srv/asuser
echo root-only >/srv/asuser/private
chmod 600 /srv/asuser/private
spawn fs2 sh -c 'ulimit -Sn 256 && exec vduse-fs --name fs2 --tag user2 --shared-dir /srv/asuser --user tester'
capture fs2-tag wait_for 60 virtiofs_tag user2
capture fs2-switched wait_for 60 grep -q "serving as user tester" /results/fs2.err
capture user-mount mount -t virtiofs user2 /mnt/u
pid=$(pidof vduse-fs | tr ' ' '\n' | while read -r p; do grep -q '^Uid:.*1000' "/proc/$p/status" && echo "$p"; done)
for task in /proc/"$pid"/task/*; do
    echo "$(cat "$task/comm") $(awk '/^Uid:/ {print $2 $3 $4 $5}' "$task"/status) $(awk '/^Gid:/ {print $2 $3 $4 $5}' "$task"/status) $(awk '/^CapEff:/ {print $2}' "$task"/status) $(awk '/^CapPrm:/ {print $2}' "$task"/status)"
done | result user.threads
capture user-root-creates sh -ec 'echo by-root >/mnt/u/by-root; stat -c "%u %g" /srv/asuser/by-root'
capture user-nobody-creates setpriv --reuid=65534 --regid=65534 --clear-groups \
    sh -ec 'echo by-nobody >/mnt/u/by-nobody; mkdir /mnt/u/dir-by-nobody; stat -c "%u %g" /srv/asuser/by-nobody /srv/asuser/dir-by-nobody'
capture user-reads-private cat /mnt/u/private
capture user-chown chown root /mnt/u/by-root
capture user-many sh -ec 'mkdir /mnt/u/many; i=0; while [ $i -lt 400 ]; do echo $i >/mnt/u/many/f$i; i=$((i + 1)); done;
    echo 3 >/proc/sys/vm/drop_caches; test "$(cat /mnt/u/many/f399)" = 399; rm -r /mnt/u/many'
capture user-umount umount /mnt/u
stop fs2
ls /dev/vduse | result user.after.vduse
# Files in root's /run/vduse/fs that tester may not remove: emptied instead.
stat -c '%n %s' /run/vduse/fs/fs2.* | result user.after.logs
