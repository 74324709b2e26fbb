"""``cephalo``: one command line over the library. Each command parses its options, calls one library function and
prints what it returns; errors meet one boundary (:class:`cephalo.options.Commands`). Stages are imported inside
each command, so ``predict`` never loads torch."""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path

import click

from sdk.errors import CephaloError
from sdk.spacing import MAGNIFICATION, RULER_MM

from . import build_commands, train_commands
from .options import (
    Commands,
    Finite,
    SpacingTable,
    analysis_option,
    check_convention,
    default_of,
    labels_option,
    model_option,
    porion_option,
    site_given,
    site_option,
    spacing_option,
    spacing_or_table_option,
    spacing_sources,
)
from .pacs import DicomOutputs, Pacs, quiet_libraries
from .run import EXIT_FAILED, EXIT_FLAGGED


@click.group(cls=Commands)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool):
    """Cephalometric landmark detection: train, convert, predict, evaluate, serve."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    quiet_libraries(verbose)


for _cmd in train_commands.COMMANDS + build_commands.COMMANDS:
    main.add_command(_cmd)


# -------------------------------------------------------------------------------------------------------- predict
@main.command()
@click.argument("images", nargs=-1)
@click.option("--list", "list_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A text file of images, one path a line (blank lines and # comments skipped; a relative path is "
                   "from the list's folder), read after IMAGES.")
@model_option
@click.option("--backend", type=click.Choice(["auto", "openvino", "onnxruntime"]), default="auto",
              help="auto: OpenVINO when installed, but onnxruntime for fewer than 60 images (it starts ~0.7 s "
                   "sooner, more than OpenVINO's faster reading saves on so few).")
@click.option("--threads", type=int, default=None)
@spacing_or_table_option
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write <name>.json (and .csv / overlay) here, mirroring the inputs' folders; without it, one "
                   "JSON line per image goes to stdout.")
@click.option("--csv", "write_csv", is_flag=True, help="Also write <name>.csv (needs --out).")
@click.option("--overlay", is_flag=True, help="Also write <name>_landmarks.png (needs --out).")
@click.option("--jsonl", "jsonl_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also append every image's record (result or error) to this JSON Lines file.")
@click.option("-r", "--recursive", is_flag=True, help="Read folders' sub-folders too ('**' in patterns).")
@click.option("--skip-done", is_flag=True,
              help="Skip images whose JSON in --out is complete (resume an interrupted run); with --store, "
                   "also stored (<name>.stored.json says where).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal, >= 10 images).")
@click.option("--strict", is_flag=True, help="Exit with 3 also when a result only has landmarks to check.")
@click.option("--fast-decode/--full-decode", default=True, show_default=True,
              help="Decode large JPEGs at reduced scale (faster; points move by a fraction of a millimetre) or in full.")
@analysis_option
@labels_option
@site_option
@spacing_sources
@porion_option
@click.option("--dicom-sr", is_flag=True, help="Also write <name>.sr.dcm (a DICOM Structured Report), <name>.gsps.dcm "
              "(a presentation state: the tracing as graphics a PACS viewer draws over the image) and "
              "<name>.tracing.dcm (the overlay as a DICOM image) in the image's study (needs --out and the 'pacs' "
              "extra).")
@click.option("--store", "store_url", default=None, metavar="URL",
              help="Store the DICOM outputs in a PACS: a DICOMweb URL (http(s)://host/dicom-web, STOW-RS) or "
                   "dicom://AET@host:port (C-STORE). The results are written first; a failed store is said per "
                   "image, and storing stops after 3 failures in a row (send the .dcm files later: cephalo store).")
@click.option("--store-timeout", type=Finite(1.0, 600.0), default=default_of(Pacs, "budget_s"), show_default=True,
              help="Seconds one image's store may take in all, attempts and waits included.")
def predict(images, list_file, model, backend, threads, spacing, out_dir, write_csv, overlay, jsonl_path, recursive, skip_done,
            progress, strict, fast_decode, analysis, labels, site, ruler_mm, magnification, porion, dicom_sr, store_url, store_timeout):
    """Detect landmarks on images: files, folders or glob patterns (no torch needed).

    Each image is read on its own: one that fails is named with its reason and the rest go on. A summary ends
    the run. Status per image: ok, check (some landmarks doubtful: listed), flagged (not a cephalogram, or
    landmarks outside the image), failed. Exit code: 0 none failed or flagged, 1 some failed, 3 none failed but
    some flagged (with --strict: or to check), 2 usage error.
    """

    from sdk import Detector

    from .run import JsonLines, collect_inputs, exit_code, pick_backend, read_list, run_images, summary_line

    if (overlay or write_csv or skip_done or dicom_sr) and out_dir is None:
        raise click.UsageError("--overlay, --csv, --dicom-sr and --skip-done need --out (a folder for the files)")
    site = site_given(site, labels)
    check_convention(site, model)
    listed, missing = read_list(list_file) if list_file is not None else ([], [])
    if not images and list_file is None:
        raise click.UsageError("name the images (files, folders or patterns), or give --list FILE")
    files, not_found = collect_inputs(list(images) + listed, recursive)
    missing += not_found
    if isinstance(spacing, SpacingTable):
        spacing, absent = spacing.for_files(files)
        if absent:
            click.echo(f"{len(absent)} image(s) have no row in the spacing file (e.g. {absent[0]}): their spacing "
                       f"is DICOM's, the ruler's or none", err=True)
    det = Detector(model, backend=pick_backend(backend, len(files), model), threads=threads,
                   fast_decode=fast_decode, site=site, ruler_mm=ruler_mm, magnification=magnification, porion=porion)
    more = DicomOutputs(det, analysis) if dicom_sr or store_url else None
    pacs = Pacs(store_url, store_timeout) if store_url else None
    counts = {"ok": 0, "check": 0, "flagged": 0, "failed": len(missing), "skipped": 0}
    not_stored = 0
    for spec, why in missing:
        click.echo(f"{spec}: FAILED: {why}", err=True)
    show_bar = progress if progress is not None else (sys.stderr.isatty() and len(files) >= 10)
    bar = click.progressbar(length=len(files), label="images", file=sys.stderr) if show_bar else _NoBar()
    with JsonLines(jsonl_path) as jsonl, bar:
        for o in run_images(det, files, out_dir, spacing, write_csv, overlay, skip_done, analyses=analysis,
                            more=more, pacs=pacs):
            counts[o.status] += 1
            not_stored += bool(o.store_error)
            bar.update(1)
            if o.status != "skipped":
                jsonl.write(o.record())
            elif o.written:
                jsonl.ensure(o.file, o.written[0])
            _report(o, out_dir, show_bar)
    click.echo(summary_line(counts), err=True)
    if pacs is not None:
        click.echo(pacs.summary(out_dir), err=True)
    sys.exit(EXIT_FAILED if not_stored else exit_code(counts, strict))


@main.command("compare")
@click.argument("before", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("after", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Write compare.json, compare.csv and compare.png here.")
@model_option
@click.option("--backend", type=click.Choice(["auto", "openvino", "onnxruntime"]), default="onnxruntime",
              show_default=True)
@spacing_option
@site_option
@spacing_sources
@click.option("--steady/--once", default=True, show_default=True,
              help="Read a tilted head a second time, turned upright, and average the two (twice the time), or "
                   "read each image once.")
def compare_command(before, after, out_dir, model, backend, spacing, site, ruler_mm, magnification, steady):
    """Superimpose two cephalograms of one patient (BEFORE and AFTER treatment) and say what changed: each
    landmark's displacement (overall on the anterior cranial base; regional on the maxilla and the mandible) and
    each measurement's change, marked where within reading error. Nothing can tell that the two images are of one
    patient: that is the caller's to know."""
    from sdk import Detector
    from sdk.compare import compare, steady_reading, write_outputs
    from sdk.image_io import load_image

    check_convention(site, model)
    det = Detector(model, backend=backend, site=site, ruler_mm=ruler_mm, magnification=magnification)
    read = []
    for path in (before, after):
        gray = load_image(path).gray
        res = steady_reading(det, path, gray, spacing)[0] if steady else det(path, spacing)
        read.append((res, gray))
    (rb, gb), (ra, ga) = read
    result = compare(rb, ra, gb, ga, (before.name, after.name))
    paths = write_outputs(result, ra, ga, out_dir)
    beyond = [k for k, c in result["changes"].items() if c["within_reading_error"] is False]
    moved = [r["name"] for r in result["displacements"]["overall"] if not r["within_reading_error"]]
    click.echo(f"{before.name} -> {after.name}: changed beyond reading error: {', '.join(beyond) or 'no measurement'}; "
               f"moved beyond it: {', '.join(moved) or 'no landmark'}")
    for line in result["doubtful"] + result["notes"]:
        click.echo(f"  {line}")
    click.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)
    sys.exit(EXIT_FLAGGED if result["doubtful"] else 0)


@main.command("store")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("url")
@click.option("--store-timeout", type=Finite(1.0, 600.0), default=default_of(Pacs, "budget_s"), show_default=True,
              help="Seconds one image's store may take in all, attempts and waits included.")
def store_command(folder, url, store_timeout):
    """Send the DICOM files a run wrote (FOLDER's *.dcm, sub-folders too) to a PACS: a DICOMweb URL or
    dicom://AET@host:port. Instances the PACS already holds are skipped (asked by QIDO-RS or C-FIND; where it
    does not answer, all are sent: the same UIDs replace, never duplicate). Exit code 1 when any was not stored."""
    import pydicom

    from sdk.dicom_sr import require_pacs

    from .pacs import already_there, dicom_files

    require_pacs()
    pacs = Pacs(url, store_timeout)
    groups: dict = {}                 # one image's objects are stored together, as predict stores them
    unreadable = []
    for f in dicom_files(folder):
        try:
            ds = pydicom.dcmread(f)
        except Exception as e:   # pydicom raises several kinds for a file that is not DICOM
            unreadable.append(f"{f}: not a readable DICOM file ({type(e).__name__})")
            continue
        groups.setdefault(f.parent / f.name.split(".")[0], []).append((f, ds))     # <name>.sr.dcm, ...
    for line in unreadable:
        click.echo(line, err=True)
    every = [ds for items in groups.values() for _, ds in items]
    there = already_there(url, every, store_timeout)
    skipped = failed = 0
    for key, items in groups.items():
        todo = [ds for _, ds in items if str(ds.SOPInstanceUID) not in there]
        skipped += len(items) - len(todo)
        if not todo:
            continue
        try:
            pacs.send(todo)
        except CephaloError as e:
            failed += 1
            click.echo(f"{key}: NOT STORED ({e})", err=True)
    click.echo(pacs.summary(folder) + (f"; {skipped} already there" if skipped else ""), err=True)
    sys.exit(EXIT_FAILED if failed or unreadable else 0)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder of result shards (one row per image); a rerun with it skips the images already read.")
@click.option("--address", default=None,
              help="Ray cluster to join (e.g. ray://head:10001 or auto); default: a local one on this machine.")
@click.option("--workers", type=int, default=1, show_default=True, help="Detector actors (one model each).")
@click.option("--threads", type=int, default=1, show_default=True, help="Inference threads per actor.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@model_option
@click.option("--backend", default="auto", show_default=True)
@spacing_option
@click.option("-r", "--recursive", is_flag=True, help="Read folders' sub-folders too.")
@analysis_option
@site_option
@spacing_sources
@porion_option
def archive(inputs, out_dir, address, workers, threads, fmt, model, backend, spacing, recursive, analysis, site,
            ruler_mm, magnification, porion):
    """Read an archive on a Ray cluster: folders, globs, list files (.txt, one path or URL per line) or URLs
    (s3://, gs://, ...). Needs the ray extra (pip install ".[ray]"). Exit code as cephalo predict."""

    import ray  # noqa: F401  (a missing extra is named by the error boundary)

    from .archive import list_inputs, run_archive
    from .run import exit_code, summary_line

    check_convention(site, model)      # said before Ray starts
    paths, missing = list_inputs(inputs, recursive)
    for spec, why in missing:
        click.echo(f"{spec}: FAILED: {why}", err=True)
    counts = run_archive(paths, out_dir, address=address, workers=workers, threads=threads, model=model,
                         backend=backend, fmt=fmt, spacing=spacing, analyses=analysis,
                         site=site if site is None or isinstance(site, str) else site.to_dict(), ruler_mm=ruler_mm,
                         porion=porion,
                         magnification=magnification)
    counts["failed"] += len(missing)
    click.echo(f"{summary_line(counts, always_skipped=True)} -> {out_dir}", err=True)
    sys.exit(exit_code(counts))


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def _report(o, out_dir, show_bar: bool) -> None:
    """What the user sees of one image: its record on stdout without --out, else a line (or, under a progress
    bar, only what needs a look); failures always on stderr."""
    if out_dir is None:
        click.echo(json.dumps(o.record()))
    if o.store_error:
        click.echo(f"{o.file}: NOT STORED ({o.store_error}); its results are written", err=True)
    if o.status == "failed":
        click.echo(f"{o.file}: FAILED: {o.error}", err=True)
    elif out_dir is not None and (not show_bar or o.status in ("check", "flagged")):
        click.echo(_line(o))


def _line(o) -> str:
    """One stdout line per image: its status, why it is flagged, and every file written."""
    files = ", ".join(str(p) for p in o.written)
    if o.status == "skipped":
        return f"{o.file}: skipped (done: {files})"
    res = o.result
    head = f"{o.file}: {o.status.upper() if o.status == 'flagged' else o.status}, {len(res)} landmarks"
    if res.view != "as given":
        head += f" (read {res.view})"
    why = "; ".join(res.messages())
    return head + (f" [{why}]" if why else "") + f" -> {files}"


@main.command()
@model_option
@click.option("--backend", type=click.Choice(["auto", "openvino", "onnxruntime"]), default="auto")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=None,
              help="Images detected at a time (default: the cores); each uses cores / workers threads.")
@click.option("--max-upload-mb", type=Finite(0.001, None), default=50.0, show_default=True)
@click.option("--queue", type=int, default=32, show_default=True, help="Requests that may wait; more get 503.")
@labels_option
@site_option
@spacing_sources
@porion_option
def serve(model, backend, host, port, workers, max_upload_mb, queue, labels, site, ruler_mm, magnification, porion):
    """Serve the Detector over HTTP (POST /v1/landmarks) with a page at / that shows the tracing
    (needs the 'serve' extra: pip install ".[serve]")."""

    from sdk import Detector

    from .serve import Limits
    from .serve import serve as run

    site = site_given(site, labels)
    check_convention(site, model)
    cores = os.cpu_count() or 1
    n = max(1, workers or cores)
    det = Detector(model, backend=backend, threads=max(1, cores // n), site=site, ruler_mm=ruler_mm,
                   magnification=magnification, porion=porion)
    click.echo(f"serving {det.model_path.name} ({det.info['backend']}, {det.labels} labels, {n} worker(s)) on "
               f"http://{host}:{port}/", err=True)
    run(det, host, port, n, Limits(int(max_upload_mb * 2**20), queue))


@main.command()
@click.option("--port", type=int, default=11112, show_default=True, help="The DICOM port to listen on.")
@click.option("--ae-title", default="CEPHALO", show_default=True, help="This node's AE title.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--store", "store_url", required=True, metavar="URL",
              help="Where the results go: a DICOMweb URL or dicom://AET@host:port (the sending PACS, say).")
@click.option("--spool", type=click.Path(path_type=Path, file_okay=False), default=Path("cephalo-spool"),
              show_default=True, help="Received instances wait here until their results are stored.")
@click.option("--max-associations", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--queue", type=click.IntRange(1, 100000), default=64, show_default=True,
              help="Instances that may wait; beyond, a C-STORE is answered 'out of resources' (the sender retries).")
@click.option("--store-timeout", type=Finite(1.0, 600.0), default=default_of(Pacs, "budget_s"), show_default=True)
@model_option
@click.option("--backend", type=click.Choice(["auto", "openvino", "onnxruntime"]), default="auto")
@analysis_option
@labels_option
@site_option
@spacing_sources
@porion_option
def listen(port, ae_title, host, store_url, spool, max_associations, queue, store_timeout, model, backend, analysis,
           labels, site, ruler_mm, magnification, porion):
    """A DICOM node: images a PACS or modality sends here (C-STORE) are read, and their SR, presentation state
    and tracing are stored at --store, in the image's study. Runs until interrupted; a restart finishes what was
    received. Needs the 'pacs' extra."""
    import signal

    from sdk import Detector
    from sdk.dicom_sr import require_pacs

    from .listen import Listener, Spool

    Spool(spool)                        # there at once: listen-status finds it while the model loads
    require_pacs()
    site = site_given(site, labels)
    check_convention(site, model)
    det = Detector(model, backend=backend, site=site, ruler_mm=ruler_mm, magnification=magnification, porion=porion)
    node = Listener(det, spool, store_url, ae_title, port, host, max_associations, queue, analysis, store_timeout)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    node.start()
    click.echo(f"listening as {ae_title} on {host}:{port} ({det.model_path.name}, {det.labels} labels); results to "
               f"{store_url}; spool {spool}", err=True)
    done.wait()
    node.stop()


@main.command("listen-status")
@click.argument("spool", type=click.Path(path_type=Path, file_okay=False))
def listen_status(spool):
    """What a listener's spool holds (waiting, done, refused) and whether the listener is alive; exit 1 when not."""
    from .listen import status_of

    st = status_of(spool)
    click.echo(json.dumps(st))
    sys.exit(0 if st["alive"] else 1)


@main.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The clinic's labelled images, in a layout 'cephalo train' reads (ISBI with splits.csv, LabelMe).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The site profile to write (JSON); its name is the file's stem unless --name is given.")
@click.option("--name", default=None, help="The site's name, as results will show it.")
@click.option("--split", default="", show_default="'' = all images",
              help="Split(s) of splits.csv to use, comma-separated ('' = all).")
@click.option("--annotators", default="senior", show_default=True, help="Annotator CSVs to average, comma-separated.")
@click.option("--format", "fmt", default="auto", show_default=True,
              help="Data layout: auto | isbi (looks for <annotator>.csv) | labelme (looks for *.json beside the images).")
@click.option("--spacing", "spacing_text", default=None,
              help="mm per pixel of every image, or a CSV of image,spacing (default: the folder's spacing.csv).")
@model_option
@click.option("--backend", type=click.Choice(["auto", "openvino", "onnxruntime"]), default="auto")
@click.option("--base", default=None, metavar="NAME",
              help="The convention the site is learnt on top of: its local stage reads the images and the profile "
                   "names it (default: the clinicians' consensus; e.g. 'challenge').")
@click.option("--ruler-mm", type=Finite(*RULER_MM), default=None,
              help="The tick pitch of the clinic's cephalostat ruler, mm: kept in the profile (predict --site then "
                   "takes spacings from the ruler where an image has none) and checked against the images' spacing.")
@click.option("--magnification", type=Finite(*MAGNIFICATION), default=None,
              help="The clinic's detector / mid-sagittal magnification (about 1.1): kept in the profile, which then "
                   "divides DICOM detector spacings by it.")
@labels_option
def adapt(data_dir, out, name, split, annotators, fmt, spacing_text, model, backend, base, ruler_mm, magnification,
          labels):
    """Learn a clinic's landmark conventions from its own labelled images (at least 5; 10 or more is better) and
    write a site profile for predict/serve/archive --site and Detector(site=...). Prints the error before and
    after on those images, cross-validated."""
    from train.adapt import adapt_site
    from train.runner import names

    spacing = None
    if spacing_text is not None:
        try:
            spacing = float(spacing_text)
        except ValueError:
            spacing = Path(spacing_text)
            if not spacing.is_file():
                raise click.BadParameter(f"{spacing_text!r} is neither a number nor a CSV file",
                                         param_hint="--spacing") from None
    adapt_site(data_dir, out, name=name, fmt=fmt, split=names(split), annotators=names(annotators),
               spacing=spacing, model=model, backend=backend, base=site_given(base, labels, "--base") or "consensus", ruler_mm=ruler_mm,
               magnification=magnification, log=click.echo)


if __name__ == "__main__":
    main()
