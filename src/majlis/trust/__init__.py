"""Trust: evidence anyone can check about a space (provenance of its recording)."""
