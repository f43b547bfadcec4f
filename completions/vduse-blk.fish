complete -c vduse-blk -s c -l config -d 'YAML configuration file (see vduse.yaml(5)); flags override its keys' -r -F
complete -c vduse-blk -l log-level -d 'Log level on stderr [default: VDUSE_LOG or RUST_LOG, else info]' -r -f -a "off\t'Nothing'
error\t'Failures only'
warn\t'Failures and warnings'
info\t'What the server does (the default)'
debug\t'Every request to the device, every queue start and stop'
trace\t'Everything'"
complete -c vduse-blk -l name -d 'Device name: the node becomes /dev/vduse/NAME' -r
complete -c vduse-blk -l backend -d 'Where the disk\'s data is: a file or block device, or an NBD export [default: nbd when --nbd-uri is given, else file]' -r -f -a "file\t'A regular file or a block device (--backing)'
nbd\t'An export of an NBD server (--nbd-uri)'"
complete -c vduse-blk -l backing -d 'The file or block device that holds the disk (backend file)' -r -F
complete -c vduse-blk -l nbd-uri -d 'The NBD export that holds the disk: nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH (backend nbd)' -r
complete -c vduse-blk -l nbd-timeout -d 'Seconds a request may wait for the NBD server, across reconnections, before it fails with an I/O error [default: 60]' -r
complete -c vduse-blk -l nbd-connections -d 'Most NBD connections, one per queue, when the server allows multi-conn [default: --num-queues]' -r
complete -c vduse-blk -l nbd-tls-ca -d 'CA certificates (PEM) the NBD server\'s certificate must chain to (nbds:// URIs)' -r -F
complete -c vduse-blk -l nbd-tls-cert -d 'Client certificate chain (PEM) for servers that verify clients, with --nbd-tls-key' -r -F
complete -c vduse-blk -l nbd-tls-key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c vduse-blk -l nbd-tls-hostname -d 'The name the server\'s certificate must carry [default: the URI\'s host, or localhost for a Unix socket]' -r
complete -c vduse-blk -l size -d 'Disk size: bytes, or a number with K, M, G or T (e.g. 1G); default: the backing\'s' -r
complete -c vduse-blk -l create -d 'Create a missing backing file, and extend one smaller than --size' -r -f -a "true\t''
false\t''"
complete -c vduse-blk -l read-only -d 'Serve the disk read-only' -r -f -a "true\t''
false\t''"
complete -c vduse-blk -l cache -d 'Host caching of the backing [default: writeback]' -r -f -a "writeback\t'Through the host page cache; FLUSH makes writes durable'
none\t'O_DIRECT, bypassing the page cache'"
complete -c vduse-blk -l io-engine -d 'How each queue\'s requests are executed [default: auto]' -r -f -a "auto\t'io_uring where the kernel allows it, else threads'
io-uring\t'io_uring: a queue\'s requests in flight at once'
threads\t'A pool of threads per queue doing synchronous I/O'
sync\t'One request at a time per queue'"
complete -c vduse-blk -l logical-block-size -d 'Logical block size: 512, 1024, 2048 or 4096 [default: 512]' -r
complete -c vduse-blk -l physical-block-size -d 'Physical block size, a power of two >= the logical one [default: the backing\'s]' -r
complete -c vduse-blk -l num-queues -d 'Number of request queues, 1 to 64 [default: 1]' -r
complete -c vduse-blk -l queue-size -d 'Size of each queue: a power of two from 4 to 1024 [default: 256]' -r
complete -c vduse-blk -l serial -d 'Serial number the guest reads (at most 20 ASCII characters)' -r
complete -c vduse-blk -l discard -d 'Offer DISCARD to the guest [default: true]' -r -f -a "true\t''
false\t''"
complete -c vduse-blk -l write-zeroes -d 'Offer WRITE_ZEROES to the guest [default: true]' -r -f -a "true\t''
false\t''"
complete -c vduse-blk -l stats-interval -d 'Print the counters as JSON every SECS seconds; 0: never [default: 0]' -r
complete -c vduse-blk -l attach -d 'Where the device goes once set up [default: virtio]' -r -f -a "virtio\t'Add it to the vdpa bus, bound to virtio_vdpa (the kernel\'s own driver takes it)'
vhost\t'Add it to the vdpa bus, bound to vhost_vdpa (/dev/vhost-vdpa-N, for VMs)'
none\t'Leave it off the bus'"
complete -c vduse-blk -l keep-device -d 'Leave the VDUSE device in place when stopping' -r -f -a "true\t''
false\t''"
complete -c vduse-blk -l bounce-size -d 'Size of the kernel\'s bounce buffer for the device, 1M to 1G [default: the kernel\'s, 64M]' -r
complete -c vduse-blk -l busy-poll-us -d 'Microseconds each queue\'s worker keeps watching its emptied ring before it sleeps, 0 to 100000: fewer kicks and wake-ups, one CPU busy meanwhile [default: 0, off]' -r
complete -c vduse-blk -l user -d 'Once the device is attached, serve as this user (a name or a uid), keeping no capability but CAP_NET_ADMIN in the main thread (to detach at exit). Needs root' -r
complete -c vduse-blk -l group -d 'The group to serve as with --user [default: the user\'s primary group]' -r
complete -c vduse-blk -l inflight-log -d 'Where to record the requests in flight, so that a server started after this one was killed takes the device over: an absolute path, or none [default: /run/vduse/blk/NAME.inflight]' -r
complete -c vduse-blk -l check-config -d 'Check the configuration and exit: 0 valid, 78 not (or the status of another problem found, e.g. 69 for a server that cannot be reached)'
complete -c vduse-blk -l print-config -d 'Print the effective configuration as YAML and exit'
complete -c vduse-blk -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vduse-blk -s V -l version -d 'Print version'
