"""From a file's bytes to sRGB pixels, CIE Lab and a histogram: safe reading, headers, every decoder, ICC
profiles, thumbnails, which formats this install reads.
"""
