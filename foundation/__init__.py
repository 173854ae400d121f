"""The foundation every package stands on: errors, the clock, the database and its migrations, metrics,
background loops with jittered backoff, leases, the change bus, the disk guard, the MQTT seam.

It imports nothing above it (docs/layers.md; ``tests/unit/test_import_graph.py`` checks).
"""
