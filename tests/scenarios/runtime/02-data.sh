# Data written past the page cache reads back the same, near the start and far in.
dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
md5sum </tmp/pattern | result pattern.md5
capture write dd if=/tmp/pattern of=/dev/vda bs=1M oflag=direct
capture read dd if=/dev/vda of=/tmp/back bs=1M count=4 iflag=direct
md5sum </tmp/back | result back.md5
capture write-far dd if=/tmp/pattern of=/dev/vda bs=4k seek=12000 oflag=direct
capture read-far dd if=/dev/vda of=/tmp/back-far bs=4k skip=12000 count=1024 iflag=direct
md5sum </tmp/back-far | result back-far.md5
