"""Queries (colours, example images) and the two-stage search: ANN candidates, then the EMD rerank on the exact
histograms.
"""
