"""Writes: spooled locally, uploaded on close, journaled until the provider has them."""
