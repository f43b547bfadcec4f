# Link down and up.
kill -USR2 "$(cat /run/vduse-test/net0.pid)"
capture link-down wait_for 60 carrier_is "$I" 0
kill -USR2 "$(cat /run/vduse-test/net0.pid)"
capture link-up wait_for 60 carrier_is "$I" 1
