"""Real USB (UVC) document camera: MJPEG stills at full resolution, decoded preview.

API
---
``UvcDocumentCamera(*, name=None, device="/dev/video0", still_size=(2592, 1944),
preview_size=(640, 480), backend="auto", warmup_frames=3, framerate=None)``
    a :class:`devices.doccam.DocumentCamera` ("doccam" / "uvc" in the registry).
    ``backend``: ``"pyav"`` (FFmpeg's v4l2 demuxer), ``"opencv"`` (``cv2.VideoCapture``)
    or ``"auto"`` (PyAV, falling back to OpenCV if PyAV cannot open the device).
    ``start()`` raises ``DeviceNotFoundError`` naming the path if it does not exist and
    ``DeviceIOError`` naming it if no backend can open it.

How it works: the camera streams MJPEG at ``preview_size`` for the live view. A still
stops that stream, reopens the device at ``still_size`` with ``input_format=mjpeg``,
drops ``warmup_frames`` (exposure settles after a mode switch) and returns the next
packet's bytes *as is*: an MJPEG packet is a complete JPEG, so the still is never
re-encoded. Then the preview stream is reopened. The OpenCV fallback cannot hand out
the camera's own JPEG, so it re-encodes the decoded frame (quality 95). All blocking
calls run in a worker thread, one at a time.

Not tested here (no camera in CI); only the "device does not exist" and "not a
camera" paths are.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import threading
from datetime import UTC, datetime
from typing import Literal, TypeAlias

import av
import av.error
import cv2
import numpy as np

from devices.doccam import BgrImage, DocumentCamera, Size, Still
from devices.errors import DeviceConfigError, DeviceIOError, DeviceNotFoundError

logger = logging.getLogger(__name__)

Backend = Literal["auto", "pyav", "opencv"]
_MAX_EMPTY_PACKETS = 50
_Packet: TypeAlias = "av.Packet[av.video.stream.VideoStream]"  # generic in the stubs only


class UvcDocumentCamera(DocumentCamera):
    """A UVC document camera on ``/dev/videoN``; see the module docstring."""

    def __init__(
        self,
        *,
        name: str | None = None,
        device: str = "/dev/video0",
        still_size: tuple[int, int] = (2592, 1944),
        preview_size: tuple[int, int] = (640, 480),
        backend: Backend = "auto",
        warmup_frames: int = 3,
        framerate: int | None = None,
    ) -> None:
        super().__init__(name=name)
        if backend not in ("auto", "pyav", "opencv"):
            raise DeviceConfigError(f"unknown uvc backend {backend!r} (auto, pyav, opencv)")
        if warmup_frames < 0:
            raise DeviceConfigError(f"warmup_frames {warmup_frames} is negative")
        self._device = device
        self._still_size = Size(*still_size)
        self._preview_size = Size(*preview_size)
        self._backend_choice: Backend = backend
        self._warmup = warmup_frames
        self._framerate = framerate
        self._backend: _Backend | None = None
        self._io_lock = threading.Lock()

    @property
    def device(self) -> str:
        return self._device

    @property
    def still_size(self) -> Size:
        return self._still_size

    @property
    def preview_size(self) -> Size:
        return self._preview_size

    async def _start(self) -> None:
        self._backend = await asyncio.to_thread(self._open_backend)

    def _open_backend(self) -> _Backend:
        if not os.path.exists(self._device):
            raise DeviceNotFoundError(f"document camera device {self._device!r} does not exist")
        choices: list[type[_Backend]]
        if self._backend_choice == "pyav":
            choices = [_PyAvBackend]
        elif self._backend_choice == "opencv":
            choices = [_OpenCvBackend]
        else:
            choices = [_PyAvBackend, _OpenCvBackend]
        failures: list[str] = []
        for cls in choices:
            backend = cls(self._device, self._preview_size, self._still_size, self._framerate)
            try:
                backend.open_preview()
            except DeviceIOError as err:
                failures.append(f"{cls.label}: {err.message}")
                logger.info(
                    "doccam %s: %s backend failed on %s", self.name, cls.label, self._device
                )
                continue
            logger.info("doccam %s: opened %s with %s", self.name, self._device, cls.label)
            return backend
        raise DeviceIOError(f"cannot open document camera {self._device!r}: " + "; ".join(failures))

    async def _stop(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:

            def close() -> None:
                with self._io_lock:
                    backend.close()

            await asyncio.to_thread(close)

    def _require_backend(self, action: str) -> _Backend:
        self.require_started(action)
        if self._backend is None:  # pragma: no cover - guarded by require_started
            raise DeviceIOError(f"doccam {self.name!r} is not open")
        return self._backend

    async def capture_still(self) -> Still:
        backend = self._require_backend("capture a still")

        def grab() -> tuple[bytes, Size]:
            with self._io_lock:
                return backend.grab_still(self._warmup)

        jpeg, size = await asyncio.to_thread(grab)
        return Still(jpeg, size.width, size.height, datetime.now(UTC))

    async def preview_frame(self) -> BgrImage:
        backend = self._require_backend("read a preview frame")

        def read() -> BgrImage:
            with self._io_lock:
                frame = backend.read_preview()
            if (frame.shape[1], frame.shape[0]) != self._preview_size:
                frame = np.asarray(
                    cv2.resize(frame, self._preview_size, interpolation=cv2.INTER_AREA),
                    dtype=np.uint8,
                )
            return frame

        return await asyncio.to_thread(read)


class _Backend(abc.ABC):
    """One way of talking to the camera; every method blocks and is called under a lock."""

    label = "backend"

    def __init__(self, device: str, preview: Size, still: Size, framerate: int | None) -> None:
        self.device = device
        self.preview = preview
        self.still = still
        self.framerate = framerate

    @abc.abstractmethod
    def open_preview(self) -> None: ...

    @abc.abstractmethod
    def read_preview(self) -> BgrImage: ...

    @abc.abstractmethod
    def grab_still(self, warmup: int) -> tuple[bytes, Size]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class _PyAvBackend(_Backend):
    label = "pyav"

    def __init__(self, device: str, preview: Size, still: Size, framerate: int | None) -> None:
        super().__init__(device, preview, still, framerate)
        self._container: av.container.InputContainer | None = None

    def _open(self, size: Size) -> av.container.InputContainer:
        options = {"input_format": "mjpeg", "video_size": f"{size.width}x{size.height}"}
        if self.framerate is not None:
            options["framerate"] = str(self.framerate)
        try:
            return av.open(self.device, format="v4l2", options=options)
        except (av.error.FFmpegError, OSError) as err:
            raise DeviceIOError(
                f"PyAV cannot open {self.device!r} at {size.width}x{size.height} MJPEG: {err}"
            ) from err

    def _next_packet(self, container: av.container.InputContainer) -> _Packet:
        stream = container.streams.video[0]
        for _ in range(_MAX_EMPTY_PACKETS):
            try:
                packet = next(container.demux(stream))
            except (av.error.FFmpegError, OSError, StopIteration) as err:
                raise DeviceIOError(f"reading {self.device!r} failed: {err!r}") from err
            if packet.size:
                return packet
        raise DeviceIOError(f"{self.device!r} sent only empty packets")

    def open_preview(self) -> None:
        self._container = self._open(self.preview)

    def read_preview(self) -> BgrImage:
        if self._container is None:
            self.open_preview()
        container = self._container
        if container is None:  # pragma: no cover - open_preview raises instead
            raise DeviceIOError(f"{self.device!r} is not open")
        for _ in range(_MAX_EMPTY_PACKETS):
            packet = self._next_packet(container)
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, OSError) as err:
                logger.debug("uvc: dropped undecodable preview packet: %s", err)
                continue
            for frame in frames:
                if isinstance(frame, av.VideoFrame):
                    return np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
        raise DeviceIOError(f"{self.device!r}: no decodable preview frame")

    def grab_still(self, warmup: int) -> tuple[bytes, Size]:
        self.close()
        try:
            container = self._open(self.still)
            try:
                stream = container.streams.video[0]
                size = Size(
                    stream.codec_context.width or self.still.width,
                    stream.codec_context.height or self.still.height,
                )
                for _ in range(warmup):
                    self._next_packet(container)
                jpeg = bytes(self._next_packet(container))
            finally:
                container.close()
        finally:
            self.open_preview()
        if not jpeg.startswith(b"\xff\xd8"):
            raise DeviceIOError(f"{self.device!r} sent a still that is not a JPEG")
        return jpeg, size

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()


class _OpenCvBackend(_Backend):
    label = "opencv"

    def __init__(self, device: str, preview: Size, still: Size, framerate: int | None) -> None:
        super().__init__(device, preview, still, framerate)
        self._capture: cv2.VideoCapture | None = None

    def _configure(self, capture: cv2.VideoCapture, size: Size) -> None:
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, size.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size.height)
        if self.framerate is not None:
            capture.set(cv2.CAP_PROP_FPS, self.framerate)

    def open_preview(self) -> None:
        capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            raise DeviceIOError(f"OpenCV cannot open {self.device!r}")
        self._configure(capture, self.preview)
        self._capture = capture

    def _read(self) -> BgrImage:
        if self._capture is None:
            self.open_preview()
        capture = self._capture
        if capture is None:  # pragma: no cover - open_preview raises instead
            raise DeviceIOError(f"{self.device!r} is not open")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise DeviceIOError(f"OpenCV read from {self.device!r} failed")
        return np.asarray(frame, dtype=np.uint8)

    def read_preview(self) -> BgrImage:
        return self._read()

    def grab_still(self, warmup: int) -> tuple[bytes, Size]:
        capture = self._capture
        if capture is None:
            self.open_preview()
            capture = self._capture
        if capture is None:  # pragma: no cover - open_preview raises instead
            raise DeviceIOError(f"{self.device!r} is not open")
        try:
            self._configure(capture, self.still)
            for _ in range(warmup):
                capture.grab()
            frame = self._read()
        finally:
            self._configure(capture, self.preview)
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise DeviceIOError(f"JPEG encoding of a still from {self.device!r} failed")
        return bytes(buf.tobytes()), Size(frame.shape[1], frame.shape[0])

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()
