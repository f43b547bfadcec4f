# as_nobody CMD [ARGS...]: CMD as nobody, with util-linux setpriv (busybox's lacks these
# options).
as_nobody() {
    setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$@"
}
