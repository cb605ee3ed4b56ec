"""Caching edges in front of a Majlis origin: generated nginx configuration."""
