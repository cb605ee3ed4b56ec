"""Loaded by schemathesis (`hooks` in its config): how to send bodies it cannot serialize."""

from __future__ import annotations

import schemathesis

# An SDP offer is text: send the generated string as it is.
schemathesis.serializer.alias("application/sdp", "text/plain")
