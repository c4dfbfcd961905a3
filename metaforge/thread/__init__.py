"""L1, the digital thread: entities, commands (writes), queries (reads), drift, the device registry.

`entities` and `units` are the domain: they know nothing of files, SQLite or git. The graph fold
they feed is `metaforge/graph.py`, below the store that projects it. `commands`, `queries` and
the rest are the services that use the store.
"""
