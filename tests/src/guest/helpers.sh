# shellcheck shell=dash
# Shell helpers for vduse-tests scenarios (sourced before /scenario.sh, and by
# interactive shells). Results are files under /results; the host reads them back
# with GuestRun::out/err/rc/file/json. Names starting with "init." are the harness's.
#
# Debian's static busybox sh runs its applet for any name it knows (setpriv, ip,
# modprobe...) before looking at PATH. Programs the test installed over an applet get
# a shell function of their name here (programs.sh); in other shells (`sh -c`,
# `su -c`) call them by path, e.g. /usr/bin/setpriv.
# shellcheck source=/dev/null
. /lib/vduse-test/programs.sh

# capture NAME CMD [ARGS...]: run CMD, saving its stdout, stderr and exit code as
# NAME.out, NAME.err and NAME.rc. Returns CMD's exit code.
capture() {
    local name="$1" rc
    shift
    "$@" >"/results/$name.out" 2>"/results/$name.err"
    rc=$?
    echo "$rc" >"/results/$name.rc"
    echo "vduse-tests: capture $name: exit code $rc"
    return "$rc"
}

# result NAME: save standard input as result NAME.
result() {
    cat >"/results/$1"
}

# spawn NAME CMD [ARGS...]: start CMD in the background (a device server, say), its
# stdout and stderr going to NAME.out and NAME.err. End it with `stop` or `reap`.
spawn() {
    local name="$1"
    shift
    "$@" >"/results/$name.out" 2>"/results/$name.err" &
    echo $! >"/run/vduse-test/$name.pid"
    echo "vduse-tests: spawn $name: pid $!"
}

# stop NAME [SIGNAL]: send SIGNAL (default TERM) to a spawned command and wait for it;
# its exit code goes to NAME.rc (143 for a TERM it did not handle).
stop() {
    kill -"${2:-TERM}" "$(cat "/run/vduse-test/$1.pid")" 2>/dev/null
    reap "$1"
}

# reap NAME: wait for a spawned command to end by itself; its exit code goes to NAME.rc.
reap() {
    local rc
    wait "$(cat "/run/vduse-test/$1.pid")"
    rc=$?
    echo "$rc" >"/results/$1.rc"
    echo "vduse-tests: $1 ended: exit code $rc"
    return "$rc"
}

# threads_of NAME: one line per thread of spawned command NAME: TID COMM UIDS GIDS CAPEFF
# MAIN, with UIDS and GIDS as real,effective,saved,filesystem ids (/proc/PID/task/TID/status)
# and MAIN "main" for the process's first thread, "-" for the others.
threads_of() {
    local pid t
    pid=$(cat "/run/vduse-test/$1.pid")
    for t in /proc/"$pid"/task/*; do
        awk -v tid="${t##*/}" -v pid="$pid" -v comm="$(tr ' ' _ <"$t"/comm)" '
            /^Uid:/ { u = $2 "," $3 "," $4 "," $5 }
            /^Gid:/ { g = $2 "," $3 "," $4 "," $5 }
            /^CapEff:/ { c = $2 }
            END { print tid, comm, u, g, c, (tid == pid ? "main" : "-") }' "$t"/status
    done
}

# why NAME: print what a spawned command is doing (state, kernel wait channel, open
# files) to the console; for a wait that timed out.
why() {
    local pid
    pid=$(cat "/run/vduse-test/$1.pid")
    echo "vduse-tests: why $1 (pid $pid): $(grep '^State' "/proc/$pid/status" 2>/dev/null || echo gone)" \
        "wchan=$(cat "/proc/$pid/wchan" 2>/dev/null)"
    ls -l "/proc/$pid/fd" 2>/dev/null
    return 1
}

# wait_for SECONDS CMD [ARGS...]: retry CMD every 0.1 s until it succeeds; fail after
# SECONDS. E.g. `wait_for 10 test -b /dev/vda`.
wait_for() {
    local left=$(($1 * 10))
    shift
    until "$@"; do
        left=$((left - 1))
        [ "$left" -gt 0 ] || return 1
        sleep 0.1
    done
}

# kill_server: SIGKILL for server number $SERVER (spawned as srv$SERVER), reap it, then
# count on to the next number (the takeover tests start one server after another).
kill_server() {
    kill -KILL "$(cat "/run/vduse-test/srv$SERVER.pid")"
    reap "srv$SERVER"
    SERVER=$((SERVER + 1))
}

# taken_over_as NAME DEVICE USER: wait until spawned server NAME logs that it took DEVICE
# over, then that it serves as USER (a server with --user takes over as root, then
# switches).
taken_over_as() {
    wait_for 60 grep -q "device $2: taken over" "/results/$1.err" &&
        wait_for 60 grep -q "serving as user $3" "/results/$1.err"
}

# virtiofs_tag TAG: whether the virtiofs driver has registered a device with tag TAG
# (it does once it has probed the device).
virtiofs_tag() {
    cat /sys/fs/virtiofs/*/tag 2>/dev/null | grep -qx "$1"
}

# disk_by_serial SERIAL: the name (vdX) of the virtio disk whose serial is SERIAL.
disk_by_serial() {
    for d in /sys/block/vd*; do
        [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && echo "${d##*/}" && return 0
    done
    return 1
}
