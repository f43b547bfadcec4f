# Submounts.
# stat does not trigger the automount of its last component: ask for a file inside.
echo "$(stat -c %d /mnt/v/host.txt) $(stat -c %d /mnt/v/sub/f)" | result submount.devices
grep -c " /mnt/v/sub virtiofs " /proc/mounts | result submount.mounts
capture submount-read cat /mnt/v/sub/f
