"""Admission control: a listener capacity per node with a waiting room, and attack mode.

Pure and synchronous, driven by `now`: the HTTP layer (majlis.http.admission) feeds them.
They gate the creation of listener sessions only, never the media URLs (docs/security.md).
"""
