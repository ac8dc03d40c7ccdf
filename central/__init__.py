"""The central store: receives signed scan events from site gateways, keeps them, answers queries.

Data flow: `api.py` (HTTP, auth) -> `ingest.py` (verify each event) -> `store.py` (a backend:
`store_postgres.py` or `store_sqlite.py`, schema from `migrate.py` + `schema/`) -> `queries.py`
(tracing, reports, health, load, stats) <- `cli.py` and `api.py`.
"""
