# capture records stdout, stderr and exit code; workspace and host programs run, also as
# other users.
capture fails sh -c 'echo to-out; echo to-err >&2; exit 3'
capture echo guest-echo hello  world
capture nobody setpriv --reuid=65534 --regid=65534 --clear-groups guest-echo --ids as nobody
capture tester su tester -c 'id -u; touch ~/x && echo home ok'
