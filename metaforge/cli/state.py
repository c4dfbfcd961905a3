"""Global options of one `mf` run (set by the app callback, read by the commands)."""

cwd: str | None = None
debug: bool = False
