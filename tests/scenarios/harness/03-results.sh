# Binary and JSON results arrive intact.
head -c 65536 /dev/urandom >/tmp/blob
cp /tmp/blob /results/blob
od -An -tx1 -v /tmp/blob | tr -d ' \n' | result blob.hex
echo '{"answer": 42, "kernel": "'"$(uname -r)"'"}' | result doc.json
