# File operations, checked on the host side.
op create 'echo hello >a.txt; test "$(cat /srv/export/a.txt)" = hello'
op append 'echo more >>a.txt; test "$(cat /srv/export/a.txt | tail -n1)" = more'
op read 'test "$(cat host.txt)" = from-host'
op rename 'mv a.txt b.txt; test -e /srv/export/b.txt; test ! -e /srv/export/a.txt'
op mkdir 'mkdir -p d/e; test -d /srv/export/d/e'
op rmdir 'rmdir d/e d; test ! -e /srv/export/d'
op symlink 'ln -s b.txt sl; test "$(readlink /srv/export/sl)" = b.txt; test "$(head -n1 sl)" = hello'
op hardlink 'ln b.txt hl; test "$(stat -c %h /srv/export/b.txt)" = 2; test "$(stat -c %i /srv/export/hl)" = "$(stat -c %i /srv/export/b.txt)"'
op chmod 'chmod 640 b.txt; test "$(stat -c %a /srv/export/b.txt)" = 640'
op truncate 'truncate -s 3 b.txt; test "$(stat -c %s /srv/export/b.txt)" = 3; test "$(cat b.txt)" = hel'
op xattr 'setfattr -n user.color -v blue b.txt; test "$(getfattr --only-values -n user.color /srv/export/b.txt)" = blue;
    test "$(getfattr --only-values -n user.color b.txt)" = blue; setfattr -x user.color b.txt;
    ! getfattr -n user.color /srv/export/b.txt'
op fsync 'echo durable >f.txt; sync f.txt; sync -d f.txt; test "$(cat /srv/export/f.txt)" = durable'
op mkfifo 'mkfifo fifo; test -p /srv/export/fifo; mknod dev c 1 3; test -c /srv/export/dev; rm fifo dev'
op fallocate 'fallocate -l 1M big; test "$(stat -c %s /srv/export/big)" = 1048576; rm big'
op utimes 'touch -d "2001-02-03 04:05:06" f.txt; test "$(stat -c %Y /srv/export/f.txt)" = "$(stat -c %Y f.txt)";
    test "$(date -d @$(stat -c %Y /srv/export/f.txt) +%Y)" = 2001'
op statfs 'df /mnt/v | grep -q /mnt/v'
op unlink 'rm b.txt hl sl f.txt; test ! -e /srv/export/b.txt; test ! -e /srv/export/hl; test "$(ls /srv/export | tr "\n" " ")" = "abs-link host-64m host.txt rel-link sub up "'

# More files than the soft limit on open descriptors the server started with (256): the
# passthrough holds one per inode the guest remembers, and the server raises its limit.
grep "^Max open files" "/proc/$(pidof vduse-fs)/limits" | result fs0.limits
op many-files 'mkdir many; i=0; while [ $i -lt 400 ]; do : >many/f$i; i=$((i + 1)); done;
    test "$(ls many | wc -l)" = 400; rm -r many; test ! -e /srv/export/many'
