"""What every layer uses: file keys and paths, records, errors, the config, defaults, file kinds, durable writes
and hashing. Stdlib, numpy and platformdirs only.
"""
