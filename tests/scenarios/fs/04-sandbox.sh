# The sandbox of the filesystem threads.
pid=$(pidof vduse-fs)
readlink "/proc/$pid/ns/mnt" | result sandbox.main.ns
for task in /proc/"$pid"/task/*; do
    case $(cat "$task/comm") in
    vduse-fs-[0-9]*)
        echo "$(readlink "$task"/ns/mnt) $(awk '/^Seccomp:/ {print $2}' "$task"/status) $(awk '/^CapEff:/ {print $2}' "$task"/status) $(awk '/^CapPrm:/ {print $2}' "$task"/status)"
        ;;
    esac
done | result sandbox.threads
