"""Named errors of the media hub."""

from __future__ import annotations

from vwindow.errors import InvalidStateError, NotFoundError, VWindowError


class MediaError(VWindowError):
    code = "media"


class InvalidSdpError(MediaError):
    code = "invalid_sdp"


class InvalidCandidateError(MediaError):
    code = "invalid_candidate"


class HubClosedError(InvalidStateError):
    pass


class HubStateError(InvalidStateError):
    """A media request that does not fit the participant's current state."""


class ParticipantNotFoundError(NotFoundError):
    pass
