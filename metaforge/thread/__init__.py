"""L1, the digital thread: entities, the graph fold, commands (writes) and queries (reads).

`entities`, `units` and `graph` are the domain: they know nothing of files, SQLite or git.
`commands` and `queries` are the services that use the store.
"""
