#!/usr/bin/env python3
"""Rewrite the reference unit files in systemd/ from the templates in chromatica_watch/daemon/systemd.py
(tests/test_service.py fails when they differ).

    .venv/bin/python tools/write_units.py [DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from chromatica_watch.daemon.systemd import write_reference_units

if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "systemd"
    for written in write_reference_units(target):
        print(written)
