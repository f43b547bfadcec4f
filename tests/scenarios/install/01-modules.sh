# systemd-modules-load: the installed snippet.
grep -v '^#' /usr/lib/modules-load.d/vduse.conf | while read -r m; do
    [ -n "$m" ] && modprobe "$m"
done
lsmod | awk '{ print $1 }' | result modules
