"""Model directories: layout and yaml, loading, the random-weight model factory, the cache folder."""
