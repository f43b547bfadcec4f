# A start that fails half-way undoes itself: nobody may create a device through a
# world-writable control node, but not open the device's root-only node.
chmod 0666 /dev/vduse/control
capture half setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all ramdisk --name half
chmod 0600 /dev/vduse/control
ls /dev/vduse | result after-half.vduse
