"""The command line, a thin layer over the library: `main` (entry point and exit codes), `parser` with
the `options` several commands share, the commands by group in `commands/`, and `output` (printing
helpers). The only package that prints.
"""
