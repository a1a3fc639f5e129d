"""Streaming zstd decompression that notices a cut stream (``.tar.zst`` archives).

``zstandard``'s stream reader returns end-of-file quietly when its input stops in the middle of a
frame, so a truncated download would look like a shorter archive. :class:`FrameWalker` follows the
frame layout of RFC 8878 over the compressed bytes as they pass (headers and block sizes only, no
decompression) and :meth:`ZstdReader.finish` refuses a stream that did not end on a frame boundary.
The decompression itself (and each frame's content checksum) is libzstd's.
"""

from __future__ import annotations

from typing import Protocol

_FRAME_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK, _SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50


class ZstdStreamError(Exception):
    """The zstd stream is cut or damaged."""


class _Readable(Protocol):
    def read(self, size: int = -1) -> bytes: ...


class FrameWalker:
    """Tracks where a zstd stream is in its frame structure, fed the compressed bytes in order."""

    def __init__(self) -> None:
        self._need = 4  # bytes of the next header field to collect
        self._field = bytearray()
        self._state = "magic"
        self._skip = 0  # bytes of block content, checksum or skippable frame still to pass over
        self._checksum = False
        self.frames = 0

    def feed(self, data: bytes | memoryview) -> None:
        """Advance over ``data``.

        Raises:
            ZstdStreamError: bytes that are not a zstd frame (a bad magic number, a reserved block type).
        """
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                if not self._skip and self._state == "tail":
                    self._end_frame()
                continue
            take = min(self._need - len(self._field), len(view))
            self._field += view[:take]
            view = view[take:]
            if len(self._field) == self._need:
                field, self._field = bytes(self._field), bytearray()
                self._advance(field)

    def _end_frame(self) -> None:
        self.frames += 1
        self._state, self._need = "magic", 4

    def _advance(self, field: bytes) -> None:
        if self._state == "magic":
            magic = int.from_bytes(field, "little")
            if magic == _FRAME_MAGIC:
                self._state, self._need = "descriptor", 1
            elif magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
                self._state, self._need = "skippable", 4
            else:
                raise ZstdStreamError(f"not a zstd frame (magic number {magic:#010x})")
        elif self._state == "skippable":
            self._skip = int.from_bytes(field, "little")
            self._end_frame()
        elif self._state == "descriptor":
            descriptor = field[0]
            single_segment = bool(descriptor & 0x20)
            self._checksum = bool(descriptor & 0x04)
            content_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
            dictionary = (0, 1, 2, 4)[descriptor & 0x03]
            rest = (0 if single_segment else 1) + dictionary + content_size
            if rest:
                self._state, self._need = "header", rest
            else:
                self._state, self._need = "block", 3
        elif self._state == "header":
            self._state, self._need = "block", 3
        elif self._state == "block":
            header = int.from_bytes(field, "little")
            last, block_type, block_size = header & 1, (header >> 1) & 3, header >> 3
            if block_type == 3:
                raise ZstdStreamError("a zstd block of the reserved type")
            self._skip = 1 if block_type == 1 else block_size  # an RLE block holds one byte
            if last:  # the frame ends after this block's content and the optional checksum
                self._skip += 4 if self._checksum else 0
                self._state = "tail"
                if not self._skip:
                    self._end_frame()
        else:  # pragma: no cover - "tail" ends through _skip
            raise AssertionError(self._state)

    @property
    def at_frame_boundary(self) -> bool:
        """Whether the bytes fed so far end exactly where a frame ends (and there was at least one)."""
        return self.frames > 0 and self._state == "magic" and not self._field and not self._skip


class _Tee:
    """Passes the compressed bytes to the decompressor and to a :class:`FrameWalker`."""

    def __init__(self, source: _Readable, walker: FrameWalker) -> None:
        self._source = source
        self._walker = walker

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._walker.feed(data)
        return data


class ZstdReader:
    """A readable stream of the decompressed bytes of ``source`` (any number of frames)."""

    def __init__(self, source: _Readable) -> None:
        import zstandard

        self._error = zstandard.ZstdError
        self._walker = FrameWalker()
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            _Tee(source, self._walker), read_size=1 << 20, read_across_frames=True, closefd=False
        )

    def read(self, size: int = -1) -> bytes:
        try:
            return self._reader.read(size)
        except self._error as error:
            raise ZstdStreamError(f"zstd data is damaged: {error}") from None

    def readable(self) -> bool:
        return True

    def finish(self) -> None:
        """Call after reading to the end.

        Raises:
            ZstdStreamError: the stream ended inside a frame (the file is cut short).
        """
        if not self._walker.at_frame_boundary:
            raise ZstdStreamError("the zstd stream ends inside a frame (the file is cut short)")

    def close(self) -> None:
        self._reader.close()
