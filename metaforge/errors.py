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
