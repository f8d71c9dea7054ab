"""Model layer: typed events, enrichment from /proc, bounded history."""
