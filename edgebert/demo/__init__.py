"""``edgebert demo``: the whole loop on one machine — convert, register, provision, learn, ask, report."""
