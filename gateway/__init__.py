"""chot site gateway: ingest signed scan events from the site's scanners over MQTT, store them
durably (SQLite), acknowledge them end to end, forward them to the central store, publish the
signed trust list / revocations / device configs, and sign its own manual and load events.

Follow one scan: ingest.py -> store.py -> forwarder.py; app.py wires them (see README.md).
"""
