"""Compressed DICOM pixel data decoded so that no file can take the process down.

Why this module exists: a decoder failure must cost one file, never the run (issue 20). Three
kinds of failure are not Python exceptions and pass every ``except Exception``:

- GDCM throws C++ exceptions on some malformed streams (wrong BitsStored on a JPEG, a JPEG-LS
  stream narrower than Columns, YBR_RCT on a JPEG 2000 code stream) and the uncaught throw
  aborts the whole process (SIGABRT, exit 134: no CSV, and the desktop app gone);
- pylibjpeg-rle panics on malformed RLE: a Rust ``PanicException`` derives from
  ``BaseException``;
- any native decoder may loop or allocate without bound on crafted input.

The design, in order of preference (each decoder is named explicitly: pydicom's own default
order would pick GDCM first, even for JPEG 2000):

1. **A safe plugin in-process wherever one exists.** JPEG Baseline 8-bit: Pillow
   (libjpeg-turbo, whose errors Pillow turns into Python exceptions; it is also faster than
   GDCM). JPEG 2000 and HTJ2K: pylibjpeg-openjpeg (errors are return codes). RLE:
   pylibjpeg-rle with its ``PanicException`` caught (the only ``BaseException`` caught), else
   pydicom's own pure-numpy RLE decoder. Uncompressed and deflated: pydicom itself.
2. **The header is checked against the code stream before GDCM sees it.** For the syntaxes only
   GDCM decodes here (JPEG Extended 12-bit, JPEG Lossless, JPEG-LS), the marker segments of the
   first frame must chain from SOI to SOS, Huffman tables must be well formed, and the frame
   header (SOF) must agree with Rows, Columns, SamplesPerPixel and BitsStored; a mismatch is a
   typed :class:`CorruptFileError` that names both values. This catches the abort triggers the
   fuzzing benchmark finds, cheaply and with a clear reason (bench/RESULTS.md).
3. **GDCM runs in a small pool of decoding processes** (:class:`DecoderPool`, two ``spawn``
   processes, started on first use and restarted when one dies): the parent sends the pixel
   module attributes and the encapsulated pixel data, the worker returns the first frame. An
   abort or a hang (a time limit) costs that file only: it becomes a typed error ("decoder
   process died (SIGABRT)"), and the next file gets a fresh process. ``spawn`` rather than
   ``fork`` because the desktop app and the scoring pipeline call the reader from threads.

The process boundary costs a copy of the compressed bytes and of the decoded frame (a pipe
and pickle); bench/bench_decoders.py measures it against in-process GDCM on the same files.
Torch-free.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import signal
import struct
import threading
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from cxrscreen.engine.io.types import CorruptFileError, UnsupportedFileError

logger = logging.getLogger(__name__)

# Transfer syntaxes decoded by GDCM, in the pool, after the SOF check.
GDCM_SYNTAXES: frozenset[str] = frozenset(
    (JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless))
_JPEG_LS = frozenset((JPEGLSLossless, JPEGLSNearLossless))
# Pixel module attributes a decoder needs (sent to the pool's processes).
_PIXEL_ATTRIBUTES = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                     "HighBit", "PixelRepresentation", "PhotometricInterpretation",
                     "PlanarConfiguration", "NumberOfFrames")
# Start-of-frame markers: JPEG processes (C0-C3, C5-C7, C9-CB, CD-CF) and JPEG-LS (F7).
_SOF_MARKERS = frozenset((*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC),
                          *range(0xCD, 0xD0), 0xF7))
_SOS = 0xDA
_DHT = 0xC4
# Huffman-coded frames (the others are arithmetic-coded or JPEG-LS): they need a DHT.
_HUFFMAN_SOF = frozenset((*range(0xC0, 0xC4), *range(0xC5, 0xC8)))
# Markers without a length field (RSTn, SOI, EOI, TEM).
_STANDALONE = frozenset((*range(0xD0, 0xDA), 0x01))
_SOF_SCAN_LIMIT = 1 << 16  # a frame header lies within the first tables of the stream
DECODE_TIMEOUT_S = 60.0
POOL_PROCESSES = 2


def choose_plugin(ts: UID) -> str:
    """The pydicom decoding plugin to use in-process for ``ts`` ("" = pydicom's own choice).

    Args:
        ts: the transfer syntax (not one of :data:`GDCM_SYNTAXES`).

    Returns:
        "pillow" for JPEG Baseline, "pylibjpeg" for JPEG 2000/HTJ2K and RLE (when installed),
        "pydicom" for RLE without pylibjpeg-rle, "" for uncompressed syntaxes.
    """
    from pydicom.pixels import get_decoder

    if ts == JPEGBaseline8Bit:
        return "pillow"
    if ts == RLELossless:
        return "pylibjpeg" if "pylibjpeg" in get_decoder(ts).available_plugins else "pydicom"
    if ts.is_compressed:
        return "pylibjpeg"  # JPEG 2000 and HTJ2K: pylibjpeg-openjpeg, never GDCM
    return ""


def decode_first_frame(path: Path, ds: Dataset) -> np.ndarray:
    """Decode the first frame of ``ds``'s pixel data, never letting a decoder end the process.

    Args:
        path: the file (named in errors).
        ds: the data set, with Pixel Data and the pixel module.

    Returns:
        The stored values of frame 0 as pydicom's ``pixel_array`` returns them ((H, W) or
        (H, W, 3) RGB).

    Raises:
        UnsupportedFileError: no installed decoder for the transfer syntax.
        CorruptFileError: the decoder failed, died or timed out, or the code stream
            contradicts the header.
    """
    from pydicom.pixels import get_decoder, pixel_array

    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise UnsupportedFileError(path, f"unsupported transfer syntax {ts.name or ts}") from exc
    if ts in GDCM_SYNTAXES:
        if "gdcm" not in decoder.available_plugins:
            raise UnsupportedFileError(path, f"no decoder installed for {ts.name} pixel data "
                                             f"(needs python-gdcm)")
        check_jpeg_frame_header(path, ds, ts)
        return decoder_pool().decode(path, ts, ds)
    plugin = choose_plugin(ts)
    if plugin and plugin not in decoder.available_plugins:
        raise UnsupportedFileError(path, f"no decoder installed for {ts.name} pixel data "
                                         f"(needs {_PACKAGES.get(plugin, plugin)})")
    if not decoder.is_available:
        raise UnsupportedFileError(path, f"no decoder installed for {ts.name} pixel data")
    try:
        return pixel_array(ds, index=0, decoding_plugin=plugin)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - Rust panics derive from BaseException
        kind = "decoder panic" if type(exc).__name__ == "PanicException" else _short(exc)
        raise CorruptFileError(path, f"cannot decode {ts.name} pixel data ({kind})") from exc


_PACKAGES = {"pillow": "Pillow", "pylibjpeg": "pylibjpeg with pylibjpeg-openjpeg/-rle"}


def check_jpeg_frame_header(path: Path, ds: Dataset, ts: UID) -> None:
    """Check the first frame's JPEG/JPEG-LS frame header (SOF) against the DICOM header.

    GDCM aborts the process on several of these contradictions; refused here with both values.

    Args:
        path: the file (named in errors).
        ds: the data set (encapsulated Pixel Data, pixel module already validated).
        ts: its transfer syntax, one of :data:`GDCM_SYNTAXES`.

    Raises:
        CorruptFileError: no frame header, or one that disagrees with the DICOM header.
    """
    stream = _first_fragment(path, ds)
    sof = _find_sof(stream)
    if sof is None:
        raise CorruptFileError(path, f"{ts.name} pixel data with a malformed JPEG header (frame "
                                     f"header, Huffman tables or segment lengths)")
    marker, precision, rows, columns, components = sof
    if marker == 0xF7 and ts not in _JPEG_LS:
        raise CorruptFileError(path, f"JPEG-LS code stream in a {ts.name} file")
    if marker != 0xF7 and ts in _JPEG_LS:
        raise CorruptFileError(path, f"JPEG (not JPEG-LS) code stream in a {ts.name} file")
    expected_rows, expected_columns = int(ds.Rows), int(ds.Columns)
    if (rows, columns) != (expected_rows, expected_columns):
        raise CorruptFileError(path, f"JPEG frame is {columns}×{rows} but the header says "
                                     f"{expected_columns}×{expected_rows}")
    samples = int(ds.get("SamplesPerPixel") or 1)
    if components != samples:
        raise CorruptFileError(path, f"JPEG frame has {components} components but "
                                     f"SamplesPerPixel is {samples}")
    bits_stored, allocated = int(ds.BitsStored), int(ds.BitsAllocated)
    if not 1 <= precision <= 16:
        raise CorruptFileError(path, f"JPEG frame precision {precision} bits (allowed: 1..16)")
    if allocated not in (8, 16):
        # JPEG samples have at most 16 bits; GDCM aborts the process on BitsAllocated 32 or 64
        raise CorruptFileError(path, f"BitsAllocated {allocated} in a {ts.name} file (allowed: 8, 16)")
    if allocated == 8 and bits_stored != 8 and ts not in _JPEG_LS:
        # GDCM asserts BitsAllocated == BitsStored for 8-bit JPEG and aborts the process.
        raise CorruptFileError(path, f"BitsStored {bits_stored} with BitsAllocated 8 in a "
                                     f"{ts.name} file (allowed: 8)")


def _first_fragment(path: Path, ds: Dataset) -> bytes:
    """The first data fragment of encapsulated Pixel Data (after the Basic Offset Table)."""
    from pydicom.encaps import generate_fragments

    data = ds.PixelData
    try:
        fragments = generate_fragments(data)
        next(fragments)  # the Basic Offset Table item
        return bytes(next(fragments))
    except (StopIteration, ValueError, struct.error) as exc:
        raise CorruptFileError(path, "malformed encapsulated pixel data (no first fragment)") from exc


def _find_sof(stream: bytes) -> tuple[int, int, int, int, int] | None:
    """(marker, precision, rows, columns, components) of the frame header, or None.

    The marker segments from SOI to the first SOS must chain exactly (each length lands on the
    next marker), and a Huffman-coded frame must have well-formed Huffman tables (DHT) before
    its scan: GDCM aborts the process on a broken or missing DHT in a lossless JPEG.
    """
    if not stream.startswith(b"\xff\xd8"):
        return None
    sof: tuple[int, int, int, int, int] | None = None
    huffman_tables = False
    pos, end = 2, min(len(stream), _SOF_SCAN_LIMIT)
    while pos + 4 <= end:
        if stream[pos] != 0xFF:
            return None
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", stream[pos + 2:pos + 4])
        if length < 2 or pos + 2 + length > len(stream):
            return None
        segment = stream[pos + 4:pos + 2 + length]
        if marker in _SOF_MARKERS:
            if sof is not None or len(segment) < 6:
                return None
            rows, columns = struct.unpack(">HH", segment[1:5])
            sof = marker, segment[0], rows, columns, segment[5]
        elif marker == _DHT:
            if not _huffman_tables_ok(segment):
                return None
            huffman_tables = True
        elif marker == _SOS:
            if sof is None or (sof[0] in _HUFFMAN_SOF and not huffman_tables):
                return None
            return sof
        pos += 2 + length
    return None


def _huffman_tables_ok(segment: bytes) -> bool:
    """Whether a DHT segment is a whole number of tables (class/id, 16 counts, symbols)."""
    pos = 0
    while pos < len(segment):
        if pos + 17 > len(segment) or segment[pos] >> 4 > 1 or segment[pos] & 0x0F > 3:
            return False
        symbols = sum(segment[pos + 1:pos + 17])
        if symbols == 0 or symbols > 256:
            return False
        pos += 17 + symbols
    return pos == len(segment) and pos > 0


class DecoderCrashError(RuntimeError):
    """A pool process died (abort, signal) or ran past the time limit while decoding."""


class DecoderPool:
    """A few ``spawn``ed processes that decode with GDCM; one that dies is replaced.

    Thread-safe: each call takes an idle process (starting one when fewer than ``processes``
    exist, else waiting), so the app's decoding threads and the scoring pipeline's threads
    share it. Processes are daemons: they end with the program.

    Args:
        processes: at most this many decoding processes (>= 1).
        timeout_s: a decode running longer is stopped (its process killed) and reported
            (None: :data:`DECODE_TIMEOUT_S` when the pool is made).
    """

    def __init__(self, processes: int = POOL_PROCESSES, timeout_s: float | None = None) -> None:
        timeout_s = DECODE_TIMEOUT_S if timeout_s is None else timeout_s
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.processes = processes
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._started = 0
        self.restarts = 0

    def decode(self, path: Path, ts: UID, ds: Dataset) -> np.ndarray:
        """Decode frame 0 of ``ds`` with GDCM in a pool process.

        Args:
            path: the file (named in errors).
            ts: the transfer syntax.
            ds: the data set.

        Returns:
            Frame 0's stored values, as ``pixel_array(ds, index=0, decoding_plugin="gdcm")``.

        Raises:
            CorruptFileError: GDCM raised, or its process died or timed out.
        """
        attributes = _pixel_attributes(ds)
        worker = self._acquire()
        alive = False
        try:
            reply = worker.call(str(ts), attributes, ds.PixelData, _frame_nbytes(attributes),
                                self.timeout_s)
            alive = True
        except DecoderCrashError as exc:
            with self._cond:
                self.restarts += 1
            logger.warning("%s: %s; decoder process replaced", path, exc)
            raise CorruptFileError(path, f"cannot decode {ts.name} pixel data ({exc})") from exc
        finally:
            self._release(worker, alive)
        if reply[0] == "ok":
            return reply[1]
        raise CorruptFileError(path, f"cannot decode {ts.name} pixel data ({reply[1]})")

    def close(self) -> None:
        """Stop the idle processes (busy ones stop when their call returns)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._started -= len(idle)
        for worker in idle:
            worker.close()

    def _acquire(self) -> _Worker:
        with self._cond:
            while not self._idle and self._started >= self.processes:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._started += 1
        try:
            return _Worker()
        except BaseException:
            with self._cond:
                self._started -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker, alive: bool) -> None:
        with self._cond:
            if alive:
                self._idle.append(worker)
            else:
                self._started -= 1
            self._cond.notify()
        if not alive:
            worker.close()


class _Worker:
    """One decoding process, the parent's end of its pipe, and two shared-memory buffers.

    The compressed bytes go to the process, and the decoded frame comes back, through shared
    memory: through the pipe, megabytes cost a context switch per 64 KiB on a loaded machine
    (measured: +100 ms for a 2048² frame); only a small request and reply use the pipe.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=serve, args=(child,), daemon=True,
                                       name="cxrscreen-decoder")
        self.process.start()
        child.close()
        self.buffers: dict[str, SharedMemory] = {}

    def call(self, ts: str, attributes: dict[str, Any], data: bytes, out_nbytes: int,
             timeout_s: float) -> tuple:
        into = self._buffer("in", len(data))
        into.buf[:len(data)] = data
        out = self._buffer("out", out_nbytes)
        try:
            self.conn.send((ts, attributes, into.name, len(data), out.name, out.size))
            if not self.conn.poll(timeout_s):
                self.process.kill()
                raise DecoderCrashError(f"decoder stopped after {timeout_s:g} s (time limit)")
            reply = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.process.join(timeout=5)
            raise DecoderCrashError(f"decoder process died ({_exit_reason(self.process.exitcode)})") from exc
        if reply[0] != "shared":
            return reply
        _, dtype, shape = reply
        view = np.ndarray(shape, dtype=np.dtype(dtype), buffer=out.buf)
        arr = view.copy()
        del view  # the buffer can only be closed once no array points into it
        return "ok", arr

    def _buffer(self, which: str, nbytes: int) -> SharedMemory:
        """The ``which`` buffer, at least ``nbytes`` long (replaced by a larger one when short)."""
        buffer = self.buffers.get(which)
        if buffer is None or buffer.size < nbytes:
            if buffer is not None:
                buffer.close()
                buffer.unlink()
            buffer = SharedMemory(create=True, size=max(nbytes, 1 << 20))
            self.buffers[which] = buffer
        return buffer

    def close(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        for buffer in self.buffers.values():
            buffer.close()
            buffer.unlink()
        self.buffers.clear()


def _frame_nbytes(attributes: dict[str, Any]) -> int:
    """Bytes of one decoded frame as pydicom returns it (the output buffer's size)."""
    allocated = int(attributes.get("BitsAllocated", 8))
    itemsize = 1 if allocated <= 8 else 2 if allocated <= 16 else 4 if allocated <= 32 else 8
    return (int(attributes.get("Rows", 1)) * int(attributes.get("Columns", 1))
            * int(attributes.get("SamplesPerPixel", 1)) * itemsize)


def _exit_reason(code: int | None) -> str:
    """A process exit code as "SIGABRT" or "exit 3"."""
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


def _pixel_attributes(ds: Dataset) -> dict[str, Any]:
    """The pixel module as plain Python values (picklable without pydicom types)."""
    out: dict[str, Any] = {}
    for keyword in _PIXEL_ATTRIBUTES:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        out[keyword] = str(value) if keyword == "PhotometricInterpretation" else int(value)
    return out


def serve(conn: Connection) -> None:
    """A pool process's loop: decode requests until the pipe closes (module level: spawnable)."""
    import gdcm  # noqa: F401 - imported before the first request, so its cost is paid once
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels import pixel_array

    attached: dict[str, SharedMemory] = {}
    while True:
        try:
            ts, attributes, in_name, in_nbytes, out_name, out_nbytes = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            for old in [k for k in attached if k not in (in_name, out_name)]:
                attached.pop(old).close()  # replaced by a larger buffer: let the old one go
            into, out = _attach(attached, in_name), _attach(attached, out_name)
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = UID(ts)
            for keyword, value in attributes.items():
                setattr(ds, keyword, value)
            ds.add_new(0x7FE00010, "OB", bytes(into.buf[:in_nbytes]))
            arr = pixel_array(ds, index=0, decoding_plugin="gdcm")
            if arr.nbytes <= out_nbytes:
                view = np.ndarray(arr.shape, dtype=arr.dtype, buffer=out.buf)
                view[...] = arr
                del view
                reply: tuple = ("shared", arr.dtype.str, arr.shape)
            else:
                reply = ("ok", arr)
        except Exception as exc:  # noqa: BLE001 - reported to the parent as the reason
            reply = ("error", _short(exc))
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


def _attach(attached: dict[str, SharedMemory], name: str) -> SharedMemory:
    """The parent's buffer ``name``, attached once."""
    if name not in attached:
        # A spawned process shares its parent's resource tracker, so attaching registers the
        # name a second time (a no-op); the parent unlinks it.
        attached[name] = SharedMemory(name=name)
    return attached[name]


_POOL: DecoderPool | None = None
_POOL_LOCK = threading.Lock()


def decoder_pool() -> DecoderPool:
    """The process-wide :class:`DecoderPool` (created on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = DecoderPool()
            atexit.register(_POOL.close)  # remove its shared memory before the interpreter ends
        return _POOL


def _short(exc: BaseException) -> str:
    """An exception as one short line (pydicom's "all plugins failed" keeps the plugins' reasons)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("Unable to decode as exceptions were raised") and len(lines) > 1:
        return "; ".join(lines[1:])[:160]
    return lines[0][:160]
