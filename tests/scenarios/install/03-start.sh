# systemd: ExecStart of the unit, %i = the instance, NOTIFY_SOCKET for Type=notify.
exec_start() {
    sed -n 's/^ExecStart=//p' "/usr/lib/systemd/system/$1@.service" | sed "s/%i/$2/g"
}
exec_start vduse-blk disk0 | result blk.exec
exec_start vduse-net-null null0 | result net.exec
exec_start vduse-fs fs0 | result fs.exec
for unit in blk:vduse-blk:disk0:/sys/bus/vdpa/devices/disk0 net:vduse-net-null:null0:/sys/bus/vdpa/devices/null0 fs:vduse-fs:fs0:/sys/bus/vdpa/devices/fs0; do
    name=${unit%%:*}; rest=${unit#*:}; tool=${rest%%:*}; rest=${rest#*:}; inst=${rest%%:*}; check=${rest#*:}
    spawn "$name-ready" notify-listen "/run/$name.sock" --check "$check"
    wait_for 60 test -S "/run/$name.sock"
    cmd=$(exec_start "$tool" "$inst")
    NOTIFY_SOCKET=/run/$name.sock spawn "$name" sh -c "exec $cmd"
    capture "$name-ready" reap "$name-ready"
done
