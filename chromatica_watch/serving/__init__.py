"""The daemon's two doors for other processes: the local socket API and the web app; they see a small read-side
interface, never the daemon itself.
"""
