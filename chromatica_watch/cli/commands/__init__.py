"""The commands, by group: each module's `add_*` functions declare a command's arguments and point it at
its `cmd_*` function, which returns the exit code."""
