"""Several Majlis nodes sharing one Redis (`majlis serve --redis URL`).

Redis holds what every node must agree on: the cluster's secrets, each space's record and
stage, the recording of every announced segment, which node runs each live space's media
pipeline (a lease), rate-limit budgets and audience uniques. Each node keeps its own SQLite
and data folder as a working copy; without `--redis` nothing here runs.
"""
