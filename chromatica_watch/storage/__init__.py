"""The index directory on disk: the DuckDB catalog (the committed record), the FAISS live index derived from it,
the histogram file, checkpoints, upgrades; held open by the store.
"""
