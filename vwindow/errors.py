"""Named errors of the domain core; every package's errors derive from VWindowError."""

from __future__ import annotations

import errno


class VWindowError(Exception):
    """Root of every error vwindow raises on purpose.

    ``code`` is the stable machine-readable name sent to clients; ``field`` names the
    input that was wrong, when there is one.
    """

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def details(self) -> dict[str, object]:
        """Extra machine-readable facts for the client (e.g. where to resume)."""
        return {}


class ConfigError(VWindowError):
    code = "invalid_config"


class ValidationError(VWindowError):
    code = "invalid_message"
    http_status = 400


class AuthError(VWindowError):
    code = "unauthenticated"
    http_status = 401


class ForbiddenError(VWindowError):
    code = "forbidden"
    http_status = 403


class NotFoundError(VWindowError):
    code = "not_found"
    http_status = 404


class ConflictError(VWindowError):
    code = "conflict"
    http_status = 409


class InvalidStateError(VWindowError):
    code = "invalid_state"
    http_status = 409


class TooLargeError(VWindowError):
    code = "too_large"
    http_status = 413


class UnavailableError(VWindowError):
    """A resource the server depends on (the database) is not there right now."""

    code = "unavailable"
    http_status = 503


class StorageError(VWindowError):
    code = "storage"
    http_status = 507

    @classmethod
    def from_os_error(cls, what: str, err: OSError) -> StorageError:
        """``what`` failed; a full disk is said so, with what the user can do about it."""
        if err.errno == errno.ENOSPC:
            return cls(f"{what}: the server's disk is full, nothing was saved. Tell the "
                       "administrator; try again once space has been freed")
        return cls(f"{what}: {err.strerror or err}")
