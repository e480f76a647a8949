"""nanoparl: a from-scratch, readable reimplementation of PARL-MT (arXiv 2509.23206)."""
