"""One way to reach an index: the running daemon over its socket, or the index directory opened here; used by
every CLI command and by the Python API.
"""
