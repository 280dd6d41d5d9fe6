"""Per-image results of `afm infer` as they complete: append-only record logs.

Each process appends to its own log file (one per process and start), one record
per finished image, flushed and fsynced before the next: a kill loses at most
the images in flight, and a record torn by the kill (short, or failing its
CRC) ends that log's readable part. Payloads are ``np.savez`` archives read with
``allow_pickle=False``, so a log never runs code. An image's record holds its
arrays exactly (float64), so the final files assembled from records are the
same bytes whichever process, start or shard produced them.
"""

from __future__ import annotations

import io
import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from afmcli.detections import Detections
from afmcli.inference.predict import ImageResult

MAGIC = b"AFMR"
HEADER = struct.Struct("<4sQI")  # magic, payload length, CRC32 of the payload
SUFFIX = ".rec"


@dataclass(frozen=True)
class RecordRef:
    path: Path
    offset: int  # of the payload
    length: int


def encode(result: ImageResult) -> bytes:
    arrays = {"meta": np.array([result.image_id, *result.size, result.n_tiles], dtype=np.int64)}
    for key in ("slices", "full", "fused"):
        dets = getattr(result, key)
        arrays.update({f"{key}_boxes": dets.boxes, f"{key}_scores": dets.scores, f"{key}_labels": dets.labels})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode(payload: bytes) -> ImageResult:
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        image_id, width, height, n_tiles = (int(v) for v in z["meta"])
        dets = {key: Detections(z[f"{key}_boxes"], z[f"{key}_scores"], z[f"{key}_labels"])
                for key in ("slices", "full", "fused")}
    return ImageResult(image_id, (width, height), n_tiles, **dets)


class RecordWriter:
    """Appends records to a new log in ``folder`` (a unique name per writer)."""

    def __init__(self, folder: Path, rank: int = 0):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"rank{rank:04d}-{uuid.uuid4().hex}{SUFFIX}"
        self._file = open(self.path, "ab")

    def append(self, result: ImageResult) -> None:
        payload = encode(result)
        self._file.write(HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_refs(path: Path) -> Iterator[tuple[int, RecordRef]]:
    """(image id, ref) of each whole record of one log, up to a torn tail."""
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                return
            magic, length, crc = HEADER.unpack(header)
            payload = f.read(length)
            if magic != MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
                return
            with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                image_id = int(z["meta"][0])
            yield image_id, RecordRef(path, offset + HEADER.size, length)
            offset += HEADER.size + length


def scan_records(folder: Path) -> dict[int, RecordRef]:
    """Where each finished image's record is, over every log in ``folder``."""
    index: dict[int, RecordRef] = {}
    if folder.is_dir():
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            index.update(iter_refs(path))
    return index


def read_record(ref: RecordRef) -> ImageResult:
    with open(ref.path, "rb") as f:
        f.seek(ref.offset)
        return decode(f.read(ref.length))
