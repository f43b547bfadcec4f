# The helpers of the steps: sysfs_of and sums.
# key=value lines of what sysfs says about disk $1.
sysfs_of() {
    for f in size ro queue/logical_block_size queue/physical_block_size \
        queue/max_segment_size queue/max_segments serial; do
        echo "$f=$(cat "/sys/block/$1/$f")"
    done
    echo "mq=$(ls "/sys/block/$1/mq" | wc -l)"
}
FILES="big small dir/numbers"
# sums DIR: sha256sum of the $FILES under DIR.
sums() {
    # shellcheck disable=SC2086 # FILES is a list of names
    (cd "$1" && sha256sum $FILES)
}
