"""From a file's bytes to sRGB pixels, CIE Lab and a histogram: safe reading (reading), headers and sizes
(headers), every decoder (decoders), ICC profiles (icc), sRGB -> Lab (lab), a photo's features (features),
thumbnails, which formats this install reads (formats).
"""
