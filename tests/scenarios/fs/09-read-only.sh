# A read-only export.
# File handles instead of descriptors; they exclude the namespace, so here the read-only
# export is enforced by the server alone (not by a read-only bind mount).
spawn fs1 vduse-fs --name fs1 --tag ro1 --shared-dir /srv/export --read-only --inode-file-handles prefer
capture fs1-tag wait_for 60 virtiofs_tag ro1
capture ro-mount mount -t virtiofs ro1 /mnt/ro
ls -l /srv/export | result ro.before
capture ro-create touch /mnt/ro/new
capture ro-write sh -c 'echo x >>/mnt/ro/host.txt'
capture ro-mkdir mkdir /mnt/ro/dir
capture ro-rename mv /mnt/ro/host.txt /mnt/ro/moved
capture ro-unlink rm /mnt/ro/host.txt
capture ro-chmod chmod 600 /mnt/ro/host.txt
capture ro-read cat /mnt/ro/host.txt
ls -l /srv/export | result ro.after
capture ro-umount umount /mnt/ro
stop fs1
