complete -c vduse-fs -s c -l config -d 'YAML configuration file (see vduse.yaml(5)); flags override its keys' -r -F
complete -c vduse-fs -l log-level -d 'Log level on stderr [default: VDUSE_LOG or RUST_LOG, else info]' -r -f -a "off\t'Nothing'
error\t'Failures only'
warn\t'Failures and warnings'
info\t'What the server does (the default)'
debug\t'Every request to the device, every queue start and stop'
trace\t'Everything'"
complete -c vduse-fs -l name -d 'Device name: the node becomes /dev/vduse/NAME' -r
complete -c vduse-fs -l shared-dir -d 'The directory to share' -r -F
complete -c vduse-fs -l tag -d 'The tag `mount -t virtiofs` names, at most 36 bytes [default: the device name]' -r
complete -c vduse-fs -l read-only -d 'Refuse every change with EROFS [default: false]' -r -f -a "true\t''
false\t''"
complete -c vduse-fs -l cache -d 'What the guest may cache [default: auto]' -r -f -a "never\t'Nothing is cached: every access asks the server'
metadata\t'Names and attributes are cached, file data is not'
auto\t'Attributes for a second, file data until the next open'
always\t'Everything, for a day: only when nothing else changes the directory'"
complete -c vduse-fs -l writeback -d 'Let the guest cache writes and send them later; only when nothing else changes the directory [default: false]' -r -f -a "true\t''
false\t''"
complete -c vduse-fs -l xattr -d 'Extended attributes [default: false]' -r -f -a "true\t''
false\t''"
complete -c vduse-fs -l announce-submounts -d 'Mark host mount points inside the directory as submounts, so the guest gives them device numbers of their own [default: false]' -r -f -a "true\t''
false\t''"
complete -c vduse-fs -l inode-file-handles -d 'How inodes are held: never (an O_PATH descriptor each) or prefer (a file handle where the host file system has them; needs CAP_DAC_READ_SEARCH and excludes the mount namespace sandbox) [default: never]' -r -f -a "never\t'An O_PATH descriptor per inode'
prefer\t'A file handle where the host file system has them'"
complete -c vduse-fs -l num-request-queues -d 'Request queues, 1 to 16, besides the high-priority queue [default: 1]' -r
complete -c vduse-fs -l queue-size -d 'Size of each queue, a power of two from 16 to 1024 [default: 128]' -r
complete -c vduse-fs -l threads -d 'Threads serving the filesystem, 1 to 64 [default: 4]' -r
complete -c vduse-fs -l sandbox -d 'Mount namespace of the filesystem threads [default: auto]' -r -f -a "auto\t'namespace with CAP_SYS_ADMIN, else none (with a warning)'
namespace\t'A mount namespace holding only the shared directory; an error without privilege'
none\t'None'"
complete -c vduse-fs -l seccomp -d 'System call filter of the filesystem threads [default: kill]' -r -f -a "kill\t'A system call outside the allow-list kills the server'
log\t'Allowed, and logged by the kernel\'s audit'
none\t'No filter'"
complete -c vduse-fs -l attach -d 'Where the device goes once set up [default: virtio]' -r -f -a "virtio\t'Add it to the vdpa bus, bound to virtio_vdpa (the kernel\'s own driver takes it)'
vhost\t'Add it to the vdpa bus, bound to vhost_vdpa (/dev/vhost-vdpa-N, for VMs)'
none\t'Leave it off the bus'"
complete -c vduse-fs -l keep-device -d 'Leave the VDUSE device in place when stopping' -r -f -a "true\t''
false\t''"
complete -c vduse-fs -l bounce-size -d 'Size of the kernel\'s bounce buffer for the device, 1M to 1G [default: the kernel\'s, 64M]' -r
complete -c vduse-fs -l busy-poll-us -d 'Microseconds each queue\'s worker keeps watching its emptied ring before it sleeps, 0 to 100000: fewer kicks and wake-ups, one CPU busy meanwhile [default: 0, off]' -r
complete -c vduse-fs -l user -d 'Once the device is attached, serve as this user (a name or a uid), keeping no capability but CAP_NET_ADMIN in the main thread (to detach at exit). Needs root' -r
complete -c vduse-fs -l group -d 'The group to serve as with --user [default: the user\'s primary group]' -r
complete -c vduse-fs -l inflight-log -d 'Where to record the requests in flight (and, beside it with extension .nodes, the guest\'s files), so that a server started after this one was killed takes the device over: an absolute path, or none [default: /run/vduse/fs/NAME.inflight]' -r
complete -c vduse-fs -l check-config -d 'Check the configuration and exit: 0 valid, 78 not (or the status of another problem found, e.g. 69 for a server that cannot be reached)'
complete -c vduse-fs -l print-config -d 'Print the effective configuration as YAML and exit'
complete -c vduse-fs -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vduse-fs -s V -l version -d 'Print version'
