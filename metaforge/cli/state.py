"""Global options of one `mf` run and its context (set by the app callback, read by the commands)."""

cwd: str | None = None
debug: bool = False
context = None  # the run's CommandContext (metaforge.cli.context)
