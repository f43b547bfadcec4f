# The server's fds past stdio, each with its open flags: all close-on-exec (a child must
# not keep the node open), one per IOTLB file.
pid=$(cat /run/vduse-test/server.pid)
for fd in "/proc/$pid/fd/"*; do
    n=${fd##*/}
    [ "$n" -gt 2 ] && echo "$n $(readlink "$fd") $(awk '/^flags:/ {print $2}' "/proc/$pid/fdinfo/$n")"
done | result server.fds
