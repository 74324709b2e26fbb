"""Running the Detector over many images: inputs (files, folders, glob patterns), output names that cannot
collide, a resumable run, one outcome per image, a summary and the exit code.

Each image is independent: one that cannot be read is reported with its reason and the run goes on. Exit codes
(``cephalo predict``): 0 every image read and none flagged; 1 at least one image failed; 3 none failed but at
least one result is flagged (not a cephalogram, landmarks outside the image; with ``strict``, also a result with
landmarks to check); 2 a usage error (click's).
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from sdk.errors import CephaloError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FLAGGED = 0, 1, 2, 3
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".dcm", ".dicom",
                  ".pgm", ".ppm", ".pbm", ".pnm", ".webp", ".jp2"}
_GLOB_CHARS = set("*?[")

# OpenVINO starts later than onnxruntime (import and compile) and then reads each image sooner: below about this
# many images onnxruntime finishes first (measured: lab/results/speed/).
FEW_IMAGES = 60


def pick_backend(requested: str, n_images: int, model: Optional[Path] = None) -> str:
    """The backend ``cephalo predict`` runs: ``requested``, except that 'auto' means onnxruntime (when installed and
    the model is ONNX) for fewer than ``FEW_IMAGES`` images, where OpenVINO's start-up costs more than it saves."""
    from sdk.backends import available_backends

    if requested != "auto" or n_images >= FEW_IMAGES or "onnxruntime" not in available_backends():
        return requested
    return "onnxruntime" if model is None or Path(model).suffix.lower() == ".onnx" else requested


def collect_inputs(specs: Sequence[str], recursive: bool = False) -> Tuple[List[Path], List[Tuple[str, str]]]:
    """Image files named by ``specs`` (files, folders, glob patterns), sorted within each spec, each once; and
    (spec, problem) for specs that name nothing. A folder gives its image files (by suffix, or no suffix as
    DICOM archives often have), its sub-folders too when ``recursive``; hidden files are skipped."""
    files: List[Path] = []
    problems: List[Tuple[str, str]] = []
    seen = set()

    def add(p: Path) -> None:
        key = os.path.normcase(str(p.resolve()))
        if key not in seen:
            seen.add(key)
            files.append(p)

    for spec in specs:
        p = Path(spec)
        if p.is_file():
            add(p)
        elif p.is_dir():
            found = sorted(q for q in (p.rglob("*") if recursive else p.glob("*"))
                           if q.is_file() and not q.name.startswith(".")
                           and (q.suffix.lower() in IMAGE_SUFFIXES or q.suffix == ""))
            if not found:
                problems.append((spec, "folder holds no image files" + ("" if recursive else
                                                                        " (use --recursive for sub-folders)")))
            for q in found:
                add(q)
        elif _GLOB_CHARS & set(spec):
            found = sorted(q for q in _glob(spec, recursive) if q.is_file())
            if not found:
                problems.append((spec, "pattern matches no file"))
            for q in found:
                add(q)
        else:
            problems.append((spec, "no such file or folder"))
    return files, problems


def read_list(path: Path) -> Tuple[List[str], List[Tuple[str, str]]]:
    """The image paths of a list file (one a line; blank lines and ``#`` comments skipped; relative paths from the
    list's folder), and (spec, problem) when the list itself cannot be read."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return [], [(str(path), f"the list file cannot be read ({type(e).__name__}: {e})")]
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)
            out.append(str(p if p.is_absolute() else Path(path).parent / p))
    if not out:
        return [], [(str(path), "the list file names no image")]
    return out, []


def _glob(spec: str, recursive: bool) -> List[Path]:
    """Files a pattern names. pathlib's '**' does not follow symbolic links into folders (glob.glob's does, and a
    link back up makes it run without end); without ``recursive`` '**' is a plain '*'."""
    parts = Path(spec).parts
    cut = next((i for i, part in enumerate(parts) if _GLOB_CHARS & set(part)), len(parts))
    base = Path(*parts[:cut]) if cut else Path(".")
    rest = "/".join(parts[cut:]) if recursive else "/".join(parts[cut:]).replace("**", "*")
    try:
        return list(base.glob(rest)) if rest else []
    except (OSError, ValueError):
        return []


def output_keys(files: Sequence[Path]) -> Dict[Path, str]:
    """Each file's output name (POSIX, no suffix): its path relative to the inputs' deepest common folder, so
    ``x/151.jpg`` and ``y/151.jpg`` become ``x/151`` and ``y/151``; files that would still collide
    (``a.jpg``, ``a.png``) keep their suffix (``a.jpg``, ``a.png``)."""
    if not files:
        return {}
    parents = [os.path.abspath(p.parent) for p in files]
    try:
        root = os.path.commonpath(parents)
    except ValueError:                      # different drives (Windows): no common folder
        root = ""
    rel = {p: Path(os.path.relpath(os.path.abspath(p), root) if root else Path(p).name) for p in files}
    keys = {p: r.with_suffix("").as_posix() for p, r in rel.items()}
    counts: Dict[str, int] = {}
    for k in keys.values():
        counts[os.path.normcase(k)] = counts.get(os.path.normcase(k), 0) + 1
    return {p: (rel[p].as_posix() if counts[os.path.normcase(k)] > 1 else k) for p, k in keys.items()}


@dataclass
class Outcome:
    """What happened to one image: ``status`` 'ok' | 'check' (some landmarks doubtful) | 'flagged' | 'failed' |
    'skipped' (done by an earlier run)."""

    file: Path
    key: str
    status: str
    result: object = None          # sdk.Landmarks when read
    error: str = ""
    written: List[Path] = field(default_factory=list)
    analyses: Optional[Sequence[str]] = None   # the measurements reported (default: all)
    store_error: str = ""          # why its DICOM outputs were not stored (--store), its results written all the same

    def record(self) -> Dict:
        """The JSON record of this outcome (the result's own dict when it was read)."""
        if self.result is not None:
            return {**self.result.to_dict(self.analyses), "file": str(self.file)}
        return {"file": str(self.file), "status": self.status, "error": self.error or None}


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` is either absent or complete (a resumed run trusts what it finds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _store_mark(base: Path) -> Path:
    return base.with_name(base.name + ".stored.json")


def _stored(base: Path, url: str) -> bool:
    """Whether this image's DICOM outputs reached ``url`` in an earlier run (its mark says so)."""
    try:
        return json.loads(_store_mark(base).read_text(encoding="utf-8")).get("url") == url
    except (OSError, ValueError, AttributeError):
        return False


def _done(json_path: Path) -> bool:
    try:
        return json.loads(json_path.read_text(encoding="utf-8")).get("status") in ("ok", "check", "flagged")
    except (OSError, ValueError, AttributeError):
        return False


def write_csv(res, path: Path) -> None:
    """One row per landmark: pixels, score, reliability, mm (when a spacing is known), its flag, whether it was
    repaired (and where it was first read), the image's flags, and how a site profile placed it (last, so that
    older readers' columns stay where they were); then, when the ear rods were found, a row 'machine_porion' (no
    index; its score the rings' completeness, site_placed 'ear rods')."""
    mm = res.mm() if res.spacing else None
    image_flags = ";".join(res.flags)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "name", "x", "y", "score", "reliability", "x_mm", "y_mm", "flag", "repaired",
                    "first_x", "first_y", "image_status", "image_flags", "site_placed"])
        for i, n in enumerate(res.names):
            fixed = bool(res.repaired and res.repaired[i])
            w.writerow([i + 1, n, f"{res.xy[i, 0]:.3f}", f"{res.xy[i, 1]:.3f}", f"{res.scores[i]:.4f}",
                        "" if res.reliability is None else f"{res.reliability[i]:.4f}",
                        "" if mm is None else f"{mm[i, 0]:.3f}", "" if mm is None else f"{mm[i, 1]:.3f}",
                        res.point_flags[i] if res.point_flags else "", "yes" if fixed else "",
                        f"{res.first_reading[i, 0]:.3f}" if fixed else "", f"{res.first_reading[i, 1]:.3f}" if fixed else "",
                        res.status, image_flags, res.site_placed[i] if res.site_placed else ""])
        rods = res.ear_rods
        if rods is not None:        # the ear rods' top, a row of its own after the landmarks
            x, y = rods.machine_porion
            w.writerow(["", "machine_porion", f"{x:.3f}", f"{y:.3f}", f"{rods.score:.4f}", "",
                        "" if mm is None else f"{x * res.spacing:.3f}", "" if mm is None else f"{y * res.spacing:.3f}",
                        "" if rods.certain else "faint ear-rod ring", "", "", "", res.status, image_flags, "ear rods"])
    os.replace(tmp, path)


def write_measurements_csv(res, path: Path, analyses: Optional[Sequence[str]] = None) -> None:
    """One row per measurement (value, unit, norm, ISBI class, doubtful, the landmarks it uses, its source, which
    porion it used where it uses porion), then
    one per measurement the schema or a missing spacing cannot give, with why; written like :func:`write_csv`."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["measurement", "value", "unit", "norm_mean", "norm_sd", "isbi_class", "isbi_class_meaning",
                    "isbi_band", "doubtful", "landmarks", "reference", "porion"])
        for k, e in res.measurements(analyses).items():
            w.writerow([k, e["value"], e["unit"], e["norm_mean"], e["norm_sd"], e.get("isbi_class", ""),
                        e.get("isbi_class_meaning", ""), e.get("isbi_band", ""), int(e["doubtful"]),
                        " ".join(e["landmarks"]), e["reference"], e.get("porion", "")])
        if res.is_cephalogram:
            for k, why in res.unavailable_measurements(analyses).items():
                w.writerow([k, "", "", "", "", "", "", "", "", "", f"unavailable: {why}", ""])
    os.replace(tmp, path)


def run_images(det, files: Sequence[Path], out_dir: Optional[Path], spacing=None,
               csv_too: bool = False, overlay: bool = False, skip_done: bool = False,
               workers: int = 2, analyses: Optional[Sequence[str]] = None,
               more: Optional[Callable] = None, pacs=None) -> Iterator[Outcome]:
    """Read each file with ``det`` and, with ``out_dir``, write ``<key>.json`` (and ``.csv``,
    ``_landmarks.png``) there; yields one Outcome per file, in order. Nothing raised by one image stops the run.
    ``workers`` images are read at once (:meth:`sdk.Detector.stream`); results are written in order. ``spacing``:
    one (or None) for all, or a list with one per file.
    ``analyses``: the measurements reported in the JSON, the measurements CSV and the overlay (default: all).
    ``more``: called as ``more(path, result, base)`` (base None without ``out_dir``) before the JSON is written,
    returning (the files it wrote, the objects to store: the DICOM outputs); its CephaloError fails the image.
    ``pacs`` (:class:`cephalo.pacs.Pacs`): stores those objects once the image's files are written; a store that
    fails is the Outcome's ``store_error``, and the results stay."""
    keys = output_keys(files)
    todo = []
    for path in files:
        base = out_dir / keys[path] if out_dir is not None else None
        json_path = base.with_name(base.name + ".json") if base is not None else None
        todo.append((path, keys[path], base, json_path,
                     skip_done and json_path is not None and _done(json_path)
                     and (pacs is None or _stored(base, pacs.url))))
    spacings = spacing if isinstance(spacing, list) else [spacing] * len(files)    # one, or one per file
    results = det.stream([t[0] for t in todo if not t[4]], [s for s, t in zip(spacings, todo) if not t[4]],
                         workers=workers)
    for path, key, base, json_path, done in todo:
        if done:
            yield Outcome(path, key, "skipped", written=[json_path])
            continue
        res = next(results)
        if isinstance(res, Exception):
            yield Outcome(path, key, "failed", error=str(res))
            continue
        out = Outcome(path, key, res.status, res, analyses=analyses)
        if base is not None:
            try:
                base.parent.mkdir(parents=True, exist_ok=True)
                if csv_too:
                    write_csv(res, base.with_name(base.name + ".csv"))
                    write_measurements_csv(res, base.with_name(base.name + "_measurements.csv"), analyses)
                    out.written += [base.with_name(base.name + ".csv"), base.with_name(base.name + "_measurements.csv")]
                if overlay:
                    from sdk.draw import save_png

                    png = base.with_name(base.name + "_landmarks.png")
                    save_png(det.draw(path, res, analyses), png.with_name(png.name + ".part"))
                    os.replace(png.with_name(png.name + ".part"), png)
                    out.written.append(png)
                if more is not None:
                    files, objects = more(path, res, base)
                    out.written += files
                # the JSON last: its presence marks the image done for a resumed run
                _write_atomic(json_path, json.dumps(out.record(), indent=2))
                out.written.insert(0, json_path)
            except (OSError, CephaloError) as e:
                out.status, out.error = "failed", f"{path}: cannot write the results ({e})"
        elif more is not None:
            try:
                objects = more(path, res, None)[1]
            except (OSError, CephaloError) as e:
                out.status, out.error = "failed", f"{path}: {e}"
        if pacs is not None and more is not None and out.status != "failed":
            try:                 # after the image's own files: a store never costs the results
                pacs.send(objects)
                if base is not None:        # what a resumed run (--skip-done) needs not send again
                    _write_atomic(_store_mark(base), json.dumps({"url": pacs.url, "instances": [
                        str(ds.SOPInstanceUID) for ds in objects]}))
            except CephaloError as e:
                out.store_error = str(e)
            except OSError as e:
                out.store_error = f"stored, but the mark of it cannot be written ({e})"
        yield out


def exit_code(counts: Dict[str, int], strict: bool = False) -> int:
    if counts.get("failed"):
        return EXIT_FAILED
    return EXIT_FLAGGED if counts.get("flagged") or (strict and counts.get("check")) else EXIT_OK


def summary_line(counts: Dict[str, int], always_skipped: bool = False) -> str:
    """The run's last line: how many images ended how."""
    skipped = counts.get("skipped", 0)
    return (f"{sum(counts.values())} image(s): {counts['ok']} ok, {counts['check']} with landmarks to check, "
            f"{counts['flagged']} flagged, {counts['failed']} failed"
            + (f", {skipped} skipped (done before)" if skipped or always_skipped else ""))


class JsonLines:
    """``--jsonl``: one line per image in one file. Lines are appended as images are read (a crash loses nothing
    already read); on a clean exit the file is rewritten with exactly one line per image, the latest record of
    each (a rerun's retry of a failed image replaces its earlier line). :meth:`ensure` adds an image a rerun skipped
    whose line an earlier crash never wrote."""

    def __init__(self, path: Optional[Path]):
        self.path, self.f = path, None
        self.records: Dict[str, str] = {}

    def __enter__(self):
        if self.path is not None:
            path = Path(self.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    self._keep(line)
            self.f = open(path, "a", encoding="utf-8")
            if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
                self.f.write("\n")             # a line torn by a crash stays on its own
        return self

    def _keep(self, line: str) -> None:
        try:
            self.records[str(json.loads(line)["file"])] = line
        except (ValueError, KeyError, TypeError):
            pass                               # a torn line: the image is read again or ensured

    def write(self, record: Dict) -> None:
        if self.f is not None:
            line = json.dumps(record)
            self.f.write(line + "\n")
            self.f.flush()
            self._keep(line)

    def ensure(self, file: Path, json_path: Path) -> None:
        """A skipped image's record from its JSON file, when this file has no line for it."""
        if self.f is not None and str(file) not in self.records:
            try:
                rec = json.loads(json_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return
            self.write({**rec, "file": str(file)})

    def __exit__(self, exc_type, *exc):
        if self.f is None:
            return False
        self.f.close()
        if exc_type is None:                   # compact: one line per image
            _write_atomic(Path(self.path), "".join(line + "\n" for line in self.records.values()))
        return False
