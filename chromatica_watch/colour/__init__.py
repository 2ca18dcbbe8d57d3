"""Colour math as pure functions: the 1152-bin CIE Lab histogram, Hellinger vectors, the fingerprint of the
histogram settings, the stored form, and the EMD rerank.
"""
