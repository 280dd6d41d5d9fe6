"""The resumable state of an `afm infer` run, kept in ``OUT/.afm-infer/``.

    run.json      fingerprint of the run (config, checkpoint, settings, image list)
                  and, once assembled without failures, ``complete`` and its stats
    records/      per-image results as they finish (afmcli.inference.records)
    viz/          drawn images as they finish (with --viz)

OUT is shared with the user: its manifest (``OUT/.afm-written``, afmcli.io.SharedFolder)
lists the entries afm infer wrote there, the only ones it ever replaces or removes
(metrics.json, plots/ or anything else a user puts in OUT are left alone).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from afmcli.errors import AfmError, ParameterError
from afmcli.io import SharedFolder, read_json, write_json

STATE_DIR = ".afm-infer"
# Where afm before the one manifest listed its outputs in OUT: read once into the manifest.
LEGACY_OUTPUTS = "outputs.json"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(cfg, checkpoint: Path, settings, source, device: str) -> dict:
    """What makes two runs' results the same: the resolved config (bases included), the
    checkpoint's bytes, the settings that change results, the device type and the images
    (ids and the source's identity of each)."""
    if not Path(checkpoint).is_file():
        raise AfmError(f"{checkpoint}: checkpoint not found")
    images = hashlib.sha256()
    for item in source.items:
        images.update(f"{item.image_id}\t{source.identity(item)}\n".encode())
    # an mmengine Config, or an ONNX model's metadata (a dict)
    config_text = json.dumps(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg, sort_keys=True, default=repr)
    return {"config": hashlib.sha256(config_text.encode()).hexdigest(),
            "checkpoint": file_digest(Path(checkpoint)),
            "settings": {**asdict(settings), "device": device.split(":")[0]},
            "images": images.hexdigest()}


def fingerprint_difference(old: dict, new: dict) -> str:
    """Which parts differ, in words (settings by name, old -> new)."""
    parts = [key for key in ("config", "checkpoint", "images") if old.get(key) != new.get(key)]
    parts = [{"images": "image list"}.get(p, p) for p in parts]
    a, b = old.get("settings") or {}, new.get("settings") or {}
    parts += [f"{k} {a.get(k)} -> {b.get(k)}" for k in b if a.get(k) != b.get(k)]
    return ", ".join(parts)


class RunState:
    def __init__(self, out: Path):
        self.out = Path(out)
        self.folder = SharedFolder(self.out, "afm infer", "out")
        self.dir = self.out / STATE_DIR
        self.records = self.dir / "records"
        self.viz = self.dir / "viz"
        self.run_file = self.dir / "run.json"

    def check_targets(self, names) -> None:
        """Refuse, before any work, to write ``names`` over anything in OUT that afm did not write."""
        legacy = self.dir / LEGACY_OUTPUTS
        if legacy.is_file():
            self.folder.record(read_json(legacy))
            legacy.unlink()
        self.folder.check(names)

    def status(self, fp: dict, overwrite: bool) -> str:
        """``new``, ``resume`` or ``complete``; a different run is refused unless ``overwrite``."""
        if overwrite or not self.run_file.is_file():
            return "new"
        run = read_json(self.run_file)
        if run.get("fingerprint") != fp:
            raise ParameterError(f"{self.out}: holds a run with another "
                                 f"{fingerprint_difference(run.get('fingerprint') or {}, fp)}; rerun its command "
                                 "to resume it, or add {overwrite} to start this one", "overwrite")
        return "complete" if run.get("complete") else "resume"

    def stored_stats(self) -> dict:
        return read_json(self.run_file)["stats"]

    def begin(self, fp: dict, status: str) -> None:
        """Start (wiping an earlier run's state when it was another) or resume."""
        if status == "new":
            for path in (self.records, self.viz):
                shutil.rmtree(path, ignore_errors=True)
            write_json(self.run_file, {"fingerprint": fp, "complete": False})
        self.records.mkdir(parents=True, exist_ok=True)

    def finish(self, fp: dict, stats: dict) -> None:
        """All images done and assembled: keep the fingerprint and stats, drop the records."""
        write_json(self.run_file, {"fingerprint": fp, "complete": True, "stats": stats})
        for path in (self.records, self.viz):
            shutil.rmtree(path, ignore_errors=True)
