# bench/lib.sh: what the benchmark commands share. Sourced, not run.
# shellcheck shell=bash

# host_ticks: the host's busy and total CPU ticks so far.
host_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
# others: how many QEMU processes run on this host.
others() { pgrep -c qemu-system || true; }
# busy_pct: the host's CPU use over 5 s, in % of all its CPUs.
busy_pct() {
    local b0 t0 b1 t1
    read -r b0 t0 < <(host_ticks)
    sleep 5
    read -r b1 t1 < <(host_ticks)
    echo $((100 * (b1 - b0) / (t1 - t0 > 0 ? t1 - t0 : 1)))
}
# wait_for_quiet_host NAME SECONDS: other guests and builds on this host share its cores
# with ours and distort every figure (a woken vCPU waits for a host core). Wait up to
# SECONDS for no other QEMU and CPUs under 15% busy; then go on with a warning.
wait_for_quiet_host() {
    local name=$1 limit=$2 waited=0 n busy
    while :; do
        n=$(others)
        busy=$(busy_pct)
        ((n == 0 && busy < 15)) && return 0
        if ((waited >= limit)); then
            echo "$name: WARNING: the host is not quiet ($n other QEMU guests, CPUs ${busy}% busy): the figures will be disturbed" >&2
            return 0
        fi
        ((waited > 0)) || echo "$name: waiting up to $limit s for a quiet host ($n other QEMU guests, CPUs ${busy}% busy)" >&2
        waited=$((waited + 5))
    done
}
