"""Emitters: turn the graph form (``edgebert.graph.form``) into runnable formats."""
