complete -c vduse-net-null -s c -l config -d 'YAML configuration file (see vduse.yaml(5)); flags override its keys' -r -F
complete -c vduse-net-null -l log-level -d 'Log level on stderr [default: VDUSE_LOG or RUST_LOG, else info]' -r -f -a "off\t'Nothing'
error\t'Failures only'
warn\t'Failures and warnings'
info\t'What the server does (the default)'
debug\t'Every request to the device, every queue start and stop'
trace\t'Everything'"
complete -c vduse-net-null -l name -d 'Device name: the node becomes /dev/vduse/NAME' -r
complete -c vduse-net-null -l mode -d 'drop: count and discard every frame; echo: send every frame back [default: drop]' -r -f -a "drop\t'Count and discard every frame'
echo\t'Send every frame back on the receive queue'"
complete -c vduse-net-null -l mac -d 'MAC address, e.g. 02:00:00:00:00:01 [default: random, locally administered]' -r
complete -c vduse-net-null -l mtu -d 'MTU, 68 to 65535 [default: 1500]' -r
complete -c vduse-net-null -l link -d 'Link state at start [default: up]' -r -f -a "up\t'Carrier on'
down\t'Carrier off'"
complete -c vduse-net-null -l queue-size -d 'Size of each queue, a power of two from 16 to 4096 [default: 256]' -r
complete -c vduse-net-null -l offloads -d 'Offer checksum and segmentation offloads [default: true]' -r -f -a "true\t''
false\t''"
complete -c vduse-net-null -l stats-interval -d 'Print the counters as JSON every SECS seconds; 0: never [default: 0]' -r
complete -c vduse-net-null -l attach -d 'Where the device goes once set up [default: virtio]' -r -f -a "virtio\t'Add it to the vdpa bus, bound to virtio_vdpa (the kernel\'s own driver takes it)'
vhost\t'Add it to the vdpa bus, bound to vhost_vdpa (/dev/vhost-vdpa-N, for VMs)'
none\t'Leave it off the bus'"
complete -c vduse-net-null -l keep-device -d 'Leave the VDUSE device in place when stopping' -r -f -a "true\t''
false\t''"
complete -c vduse-net-null -l bounce-size -d 'Size of the kernel\'s bounce buffer for the device, 1M to 1G [default: the kernel\'s, 64M]' -r
complete -c vduse-net-null -l busy-poll-us -d 'Microseconds each queue\'s worker keeps watching its emptied ring before it sleeps, 0 to 100000: fewer kicks and wake-ups, one CPU busy meanwhile [default: 0, off]' -r
complete -c vduse-net-null -l user -d 'Once the device is attached, serve as this user (a name or a uid), keeping no capability but CAP_NET_ADMIN in the main thread (to detach at exit). Needs root' -r
complete -c vduse-net-null -l group -d 'The group to serve as with --user [default: the user\'s primary group]' -r
complete -c vduse-net-null -l inflight-log -d 'Where to record the frames and buffers in flight, so that a server started after this one was killed takes the device over: an absolute path, or none [default: /run/vduse/net/NAME.inflight]' -r
complete -c vduse-net-null -l check-config -d 'Check the configuration and exit: 0 valid, 78 not (or the status of another problem found, e.g. 69 for a server that cannot be reached)'
complete -c vduse-net-null -l print-config -d 'Print the effective configuration as YAML and exit'
complete -c vduse-net-null -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vduse-net-null -s V -l version -d 'Print version'
