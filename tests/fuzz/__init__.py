"""Fuzzing what faces the network, against a real `majlis serve` with a live space.

    test_sdp.py             check_offer, then the WHIP endpoint, with offers mutated from
                            corpus/sdp/ (aiortc, Chromium, Firefox, OBS 30)
    test_playlist_query.py  _HLS_msn/_HLS_part/_HLS_skip, part and segment numbers
    test_api_bodies.py      JSON bodies of spaces, end, listener sessions, heartbeats, clips,
                            hands, reactions, consent
    test_regressions.py     every input that once crashed a parser (corpus/crashes/)
    test_headers.py         Accept-Language, If-None-Match, Authorization
    test_control_socket.py  the participants' control WebSocket, with websocket.py's harness
    test_openapi.py         schemathesis against /static/openapi.json

Examples are derandomized and bounded, so `make test` runs the same ones every time. A
longer campaign, new examples on every run:

    MAJLIS_FUZZ_SCALE=20 MAJLIS_FUZZ_RANDOM=1 bash scripts/test.sh tests/fuzz --timeout 3000

An input that fails goes into corpus/crashes/ with a case in test_regressions.py.
"""
