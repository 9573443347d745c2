"""Streaming synthesis: the official chunk schedule, the chunk renderer, and Pipeline.stream's session."""
