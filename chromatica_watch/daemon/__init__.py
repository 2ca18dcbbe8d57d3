"""The long-running indexer: the loop, filesystem events and their rules, settling, the reconciler, roots,
commands from other threads, status, systemd, and the wiring.
"""
