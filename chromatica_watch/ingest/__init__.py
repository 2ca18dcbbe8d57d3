"""Files to committed rows: the stat-only scan, the diff against the catalog, the ingest plan, worker processes
(or a Dask cluster), the one committer, roots and relocation, the decoders' stamp.
"""
