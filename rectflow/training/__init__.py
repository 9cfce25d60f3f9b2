"""training: the one loop and its pair sources."""
