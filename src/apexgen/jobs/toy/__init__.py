"""The toy benchmark: conditional 2-D distributions with an exact answer, every method side by side."""
