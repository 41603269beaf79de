"""Streaming reads: a block cache on disk and a reader that fetches ahead."""
