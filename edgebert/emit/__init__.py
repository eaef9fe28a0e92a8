"""Emitters: turn the graph form (``edgebert.compress.graph``) into runnable formats."""
