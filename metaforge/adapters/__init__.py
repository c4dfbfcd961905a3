"""Adapters between the files engineers make (KiCad, BOM CSV, STEP) and the graph.

An adapter reads a file into entities, each with the region of the file it came from, and
writes the graph's values back into the file. Built-in adapters and third-party ones are
found the same way, through the `metaforge.adapters` entry-point group (see `registry`).
"""

from metaforge.adapters.base import Adapter, AdapterError, Parsed, ParseResult, safe_name

__all__ = ["Adapter", "AdapterError", "Parsed", "ParseResult", "safe_name"]
