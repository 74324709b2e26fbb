"""Option groups several ``cephalo`` commands share, each defined once, and the one error boundary."""
from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import List, Optional

import click

from sdk.errors import CephaloError
from sdk.spacing import MAGNIFICATION, RULER_MM

# Which extra brings a module a command may be missing (pip install ".[extra]").
EXTRA_OF = {"torch": "train", "torchvision": "train", "timm": "train", "tqdm": "train", "onnx": "convert",
            "onnxslim": "convert", "nncf": "convert", "openvino": "openvino", "starlette": "serve",
            "uvicorn": "serve", "ray": "ray", "pydicom": "dicom", "matplotlib": "bench", "psutil": "bench"}


def missing_extra(e: ModuleNotFoundError, command: str) -> str:
    """One line naming the extra that brings the module ``e`` could not find."""
    top = (e.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return f"cephalo {command}: {e}"
    return f"cephalo {command} needs {top}, which the '{extra}' extra installs: pip install \".[{extra}]\""


class Finite(click.FloatRange):
    """A float in a range, refusing nan and inf (click's range lets nan through: it compares false both ways)."""

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if v is not None and not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return v


class Commands(click.Group):
    """The command group whose sub-commands share one error boundary: an error the project raises on purpose (or a
    bad value, or a file the system refuses) becomes one line and exit code 1, a missing extra names the extra;
    everything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as e:
            raise click.ClickException(missing_extra(e, ctx.invoked_subcommand or "")) from e
        except (CephaloError, ValueError, OSError) as e:
            raise click.ClickException(str(e)) from e


def default_of(fn, name: str):
    """The default of parameter ``name`` of library function ``fn``: what a command line option shows and passes,
    so that each default is written once, in the library's signature."""
    return inspect.signature(fn).parameters[name].default


def _options(*opts):
    def apply(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return apply


ALIGN_HELP = ("Move each annotator after the first onto the first's convention (mean offset per landmark, fitted on "
              "the training carve of --val-count/--seed) before averaging; validation scores against the first.")

# Where labelled images come from: the layout, the splits, and whose labels (train, train-local, pack).
data_options = _options(
    click.option("--format", "fmt", default="auto", help="Data layout: auto | isbi | labelme | aariz."),
    click.option("--split", default="train", show_default=True, help="Split(s) of splits.csv, comma-separated ('' = all)."),
    click.option("--annotators", default="senior", show_default=True, help="Annotator CSVs to average, comma-separated."),
    click.option("--align-annotators", is_flag=True, default=False, help=ALIGN_HELP),
)

labels_option = click.option(
    "--labels", default="consensus", hidden=True,
    help="The old name of --site NAME ('challenge': the ISBI 2015 challenge's ground truth).")


def _site(ctx, param, value: Optional[str]):
    from sdk.site import NAME, SiteError, SiteProfile

    if value is None:
        return None
    if NAME.fullmatch(value) and not Path(value).is_file():
        return value                    # a convention's name: the Detector finds its local stage beside the model
    try:
        return SiteProfile.load(value)
    except SiteError as e:
        raise click.BadParameter(str(e), ctx, param) from None


def site_given(site, labels: str, option: str = "--site"):
    """``--site`` (or adapt's ``--base``), or the value of ``--labels``, its old name (:mod:`sdk.renamed`)."""
    from sdk.errors import CephaloError
    from sdk.local_stage import CONSENSUS
    from sdk.renamed import renamed

    if labels == CONSENSUS:
        return site
    try:
        return renamed({"labels": labels}, {"site": site}, option, warn=False)["site"]
    except CephaloError as e:
        raise click.UsageError(f"--labels is the old name of {option}: give one ({e})") from None


def check_convention(site, model: Optional[Path]) -> None:
    """A convention's name given to --site (or --labels) must have its local stage beside the model: a usage error
    (exit 2) that names the ones there are, before any image is read."""
    from sdk.detector import DEFAULT_MODEL, MODELS_DIR
    from sdk.local_stage import CONSENSUS, local_stage_conventions, local_stage_path

    if not isinstance(site, str) or site == CONSENSUS:
        return
    at = Path(model) if model else MODELS_DIR / DEFAULT_MODEL
    if at.is_file() and not local_stage_path(at, site).is_file():
        raise click.BadParameter(f"{site!r}: no such site profile file, nor a convention whose local stage lies "
                                 f"beside {at.name} (it has: {', '.join(local_stage_conventions(at)) or 'none'})",
                                 param_hint="--site")


site_option = click.option(
    "--site", default=None, callback=_site, metavar="PROFILE|NAME",
    help="Whose conventions the points follow: a site profile from 'cephalo adapt' (that clinic's), or a "
         "convention's name: 'challenge' (the ISBI 2015 challenge's ground truth, to compare with published "
         "results). Default: the clinicians' consensus.")

model_option = click.option("--model", type=click.Path(path_type=Path), default=None,
                            help="Model file (default: the bundled one).")


def _spacing(ctx, param, value: Optional[float]) -> Optional[float]:
    from sdk.spacing import check_spacing

    if value is None:
        return None
    try:
        return check_spacing(value, "--spacing")
    except CephaloError as e:
        raise click.BadParameter(str(e).removeprefix("--spacing: "), ctx, param) from None


spacing_option = click.option("--spacing", type=float, default=None, callback=_spacing,
                              help="mm per pixel (else DICOM tags or ruler points).")


def _spacing_or_table(ctx, param, value: Optional[str]):
    """``--spacing``: a number (mm per pixel), or a CSV ``image,spacing`` read into {image: spacing}."""
    from sdk.spacing import check_spacing, read_spacing_table

    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        if not Path(value).is_file():
            raise click.BadParameter(f"{value!r} is neither a number of mm per pixel nor a CSV file", ctx,
                                     param) from None
        try:
            return SpacingTable(Path(value), read_spacing_table(value))
        except CephaloError as e:
            raise click.BadParameter(str(e), ctx, param) from None
    try:
        return check_spacing(number, "--spacing")
    except CephaloError as e:
        raise click.BadParameter(str(e).removeprefix("--spacing: "), ctx, param) from None


class SpacingTable:
    """A per-image spacing file (``image,spacing``) and which of the run's files it gives a spacing for: a row
    names a file by its path as given, its path from the table's folder, or its file name."""

    def __init__(self, path: Path, table: dict):
        self.path, self.table = path, table

    def for_files(self, files) -> "tuple[list, list]":
        """(one spacing or None per file, the files the table has no row for)."""
        out, absent = [], []
        base = self.path.parent.resolve()
        for f in files:
            keys = [str(f), Path(f).as_posix(), Path(f).name]
            try:
                keys.insert(1, Path(f).resolve().relative_to(base).as_posix())
            except ValueError:
                pass
            v = next((self.table[k] for k in keys if k in self.table), None)
            out.append(v)
            if v is None:
                absent.append(f)
        return out, absent


spacing_or_table_option = click.option(
    "--spacing", default=None, callback=_spacing_or_table, metavar="MM|CSV",
    help="mm per pixel, or a CSV 'image,spacing' with one row an image (the form adapt reads; a row names an "
         "image by its path, its path from the CSV's folder, or its file name). Else DICOM tags or ruler points.")


def _analyses(ctx, param, value: Optional[str]) -> Optional[List[str]]:
    from sdk.measurements import ANALYSES

    if value is None:
        return None
    names = [a.strip() for a in value.split(",") if a.strip()]
    if not names or set(names) - set(ANALYSES):
        raise click.BadParameter(f"{value!r}: choose from {', '.join(ANALYSES)}", ctx, param)
    return names


analysis_option = click.option(
    "--analysis", default=None, callback=_analyses,
    help="Measurements to report and trace, comma-separated: isbi2015, steiner, downs, tweed, mcnamara, ricketts, "
         "wits, other (default: all the model's landmarks give).")

progress_option = click.option("--progress/--no-progress", default=True)

# Millimetres where the file has no spacing: the ruler in the image, and DICOM's detector spacing at the patient.
porion_option = click.option(
    "--porion", type=click.Choice(["anatomical", "machine"]), default=None,
    help="Which porion the 'porion' landmark (and Frankfort horizontal) is: anatomical (the bony meatus's top, the "
         "model's reading) or machine (the top of the ear rods' ring, found in each image; flagged where none is). "
         "Default: the site profile's, else anatomical. Every record reports the ear rods found (ear_rods).")

spacing_sources = _options(
    click.option("--ruler-mm", type=Finite(*RULER_MM), default=None,
                 help="The tick pitch of the cephalostat's ruler, mm: images without a given or DICOM spacing get "
                      "theirs from the ruler read in the image (its P1/P2 are drawn)."),
    click.option("--magnification", type=Finite(*MAGNIFICATION), default=None,
                 help="Divide DICOM detector spacings by this (about 1.1: the mid-sagittal plane's magnification)."),
)
