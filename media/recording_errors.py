"""Named errors of session recording and snapshots."""

from __future__ import annotations

from media.errors import MediaError
from vwindow.errors import InvalidStateError


class RecordingError(MediaError):
    code = "recording"


class RecorderStateError(InvalidStateError, RecordingError):
    """The recorder is not in a state that allows the call (not started, finished)."""

    code = "recording_state"


class NothingRecordedError(RecordingError):
    """The session ended without a single frame recorded: there is no file."""

    code = "nothing_recorded"


class SnapshotError(MediaError):
    """No picture could be taken: an audio source, an ended one, or no keyframe in time."""

    code = "snapshot"
