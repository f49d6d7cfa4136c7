"""Data sources: verified downloads, safe archive reading and dataset decoders."""
