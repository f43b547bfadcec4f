# op NAME SHELL-TEXT: run SHELL-TEXT in /mnt/v with `set -e`; its result is NAME.
op() {
    capture "$1" sh -ec "cd /mnt/v; $2"
}
