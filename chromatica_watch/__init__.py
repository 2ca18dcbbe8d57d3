"""chromatica-watch: a daemon that keeps a CIE Lab color-search index of a photo folder live."""

__version__ = "0.1.0"
