# Before the module is loaded.
capture unloaded vduse-probe --json
capture unloaded-require vduse-probe -q --require available
