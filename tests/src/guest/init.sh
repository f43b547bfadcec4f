#!/bin/sh
# /init of a vduse-tests guest (see tests/src/guest.rs). It mounts the usual file
# systems, loads the modules listed in /etc/vduse-test/modules, runs /scenario.sh
# (or an interactive shell), then sends every file under /results to the host over
# the second serial port (ttyS1), base64-encoded between marker lines, and powers off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux
# The host retries a boot whose kernel died before this line (tests/src/guest.rs).
echo
echo "vduse-tests: init started"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
chown 1000:1000 /home/tester
hostname vduse-guest
ip link set lo up 2>/dev/null
mkdir -p /results /run/vduse-test

# The harness's own results are named init.*.
while read -r m; do
    [ -n "$m" ] || continue
    if ! modprobe "$m" >>/results/init.modprobe 2>&1; then
        echo "$m" >>/results/init.modules-failed
        echo "vduse-tests: modprobe $m failed"
    fi
done </etc/vduse-test/modules
echo "vduse-tests: $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"

cd /
if [ "$(cat /etc/vduse-test/mode)" = shell ]; then
    echo "vduse-tests: interactive shell; exit it to power off (Ctrl-A X quits QEMU)"
    ENV=/lib/vduse-test/helpers.sh setsid cttyhack sh
else
    sh -c '. /lib/vduse-test/helpers.sh && . /scenario.sh' </dev/null
    echo $? >/results/init.script.rc
fi
dmesg >/results/init.dmesg

# The empty first line separates the markers from anything glued to the port before.
stty -F /dev/ttyS1 raw -echo 2>/dev/null
{
    echo
    echo "VDUSE-TESTS-RESULTS-BEGIN"
    find /results -type f | sort | while read -r f; do
        echo "VDUSE-TESTS-FILE ${f#/results/}"
        base64 <"$f"
        echo "VDUSE-TESTS-FILE-END"
    done
    echo "VDUSE-TESTS-RESULTS-END"
} >/dev/ttyS1 # closing the port waits until it has sent everything
sync
poweroff -f
