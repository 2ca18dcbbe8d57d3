"""Tools that work on index directories with no daemon: build, diff, merge, shards, validate."""
