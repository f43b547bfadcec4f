# Discard: data in, then a hole.
dd if=/dev/urandom of=/tmp/rand bs=1M count="$DISCARD_MIB" 2>/dev/null
sha256sum </tmp/rand | result discard.data.sha
capture discard-fill dd if=/tmp/rand of="/dev/$D" bs=1M seek="$DISCARD_OFFSET_MIB" oflag=direct
capture discard-reread dd if="/dev/$D" of=/tmp/range bs=1M skip="$DISCARD_OFFSET_MIB" count="$DISCARD_MIB" iflag=direct
sha256sum </tmp/range | result discard.reread.sha
sync
stat -c %b /tmp/disk0.img | result discard.blocks-before
capture discard blkdiscard -f -o "$DISCARD_OFFSET" -l "$DISCARD_LEN" "/dev/$D"
sync
stat -c %b /tmp/disk0.img | result discard.blocks-after
capture discard-read dd if="/dev/$D" of=/tmp/range bs=1M skip="$DISCARD_OFFSET_MIB" count="$DISCARD_MIB" iflag=direct
sha256sum </tmp/range | result discard.read.sha
head -c "$DISCARD_LEN" /dev/zero | sha256sum | result zeros.sha
