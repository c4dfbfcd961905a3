"""One error hierarchy for the whole library; the CLI maps each class to an exit code.

Exit codes a git hook can rely on: 0 success, 1 findings (refused change, failed check),
2 bad usage or bad input, 3 internal error.
"""


class MetaforgeError(Exception):
    """Base of every error `mf` reports to a person: a one-line message and the fix."""

    exit_code = 3
    kind = "error"

    def __init__(self, message: str, hint: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class BadInput(MetaforgeError):
    """The user gave something malformed: an id, a value, a file."""

    exit_code = 2
    kind = "bad_input"


class NotARepository(BadInput):
    kind = "not_a_repository"


class NotFound(BadInput):
    """A well-formed id of something that does not exist (or no longer does): HTTP 404."""

    kind = "not_found"


class Refused(MetaforgeError):
    """A well-formed request the state does not allow (stale version, existing entity...)."""

    exit_code = 1
    kind = "refused"


class VersionConflict(Refused):
    kind = "version_conflict"


class ConstraintViolation(Refused):
    """The state after the change breaks an error-level constraint."""

    kind = "constraint_violation"


class LogCorrupt(MetaforgeError):
    """The event log fails its own checks: torn tail, broken chain, gap in seq."""

    exit_code = 1
    kind = "log_corrupt"


class UnknownFormat(LogCorrupt):
    """A line of the log has an event format this build does not know: a newer mf wrote it. Nothing
    from it on is folded into the index; the fix is a newer mf, not a repair."""

    kind = "unknown_format"


class InvalidEvent(MetaforgeError):
    """Code drafted an event whose payload does not fit its type's declared model: a bug, caught
    before the line is written."""

    kind = "invalid_event"


class CheckFailed(MetaforgeError):
    exit_code = 1
    kind = "check_failed"


class StorageError(MetaforgeError):
    """The operating system refused to read or write a file: no space left, a read-only file system,
    permission denied. The message names the path and the cause; the OSError is chained."""

    exit_code = 1
    kind = "storage"

    @classmethod
    def of(cls, exc: OSError, path=None) -> "StorageError":
        import errno as errnos

        where = str(path or exc.filename or "?")
        cause = exc.strerror or str(exc)
        name = errnos.errorcode.get(exc.errno or 0)
        return cls(f"{where}: {cause}", STORAGE_HINTS.get(name), {"path": where, "errno": name})


STORAGE_HINTS = {
    "ENOSPC": "free some space and run the command again; the log is as it was before it",
    "EDQUOT": "your disk quota is used up; the log is as it was before the command",
    "EFBIG": "a file size limit (ulimit -f) stopped the write; the log is as it was before the command",
    "EROFS": "the file system is mounted read-only",
    "EACCES": "check the permissions of the file and its directory (ls -l)",
    "EPERM": "check the permissions of the file and its directory (ls -l)",
    "EIO": "the disk reported an I/O error; check it before writing more",
}
