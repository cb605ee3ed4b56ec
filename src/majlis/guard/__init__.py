"""Limits at the HTTP edge: rate, held requests, connections, sizes and slow clients.

Pure, synchronous limiters (`ratelimit`, `holds`, `connections`, `timeouts`, `readiness`)
take `now` as an argument; `protocol` and `middleware` apply them to aiohttp.
"""
