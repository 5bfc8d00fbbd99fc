"""DELIFT Studio core library: data, utility engine, cache, selection, export.

This package never imports streamlit and never prints; it logs through `logging`.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
