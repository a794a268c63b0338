"""Long jobs in worker threads (indexing, decoding, scoring); results come back as signals."""
