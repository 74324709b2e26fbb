"""What a tracing shows beside the points, for every drawing of a result (the overlay, the DICOM presentation
state): the lines of the measurements' tracings, and the text lines of the measurements, the spacing and the
labels."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .measurements import TRACING


def tracing(result, analyses: Optional[Sequence[str]] = None) -> Tuple[List[Tuple[int, int]], List[Tuple[str, bool]]]:
    """(landmark index pairs to join, (text, doubtful) lines) of ``result`` (an ``sdk.Landmarks``) for the
    measurements of ``analyses`` (default: all the schema gives)."""
    meas = result.measurements(analyses)
    index = {n: i for i, n in enumerate(result.names)}
    lines = sorted({tuple(sorted((index[a], index[b]))) for k, e in meas.items() for a, b in
                    _pairs(TRACING.get(k, ()), result) if a in index and b in index})
    text = [(_measurement_line(k, e), e["doubtful"]) for k, e in meas.items()]
    if result.is_cephalogram:       # where the millimetres come from, or that they are missing
        text.append((f"spacing {result.spacing:.4f} mm/px ({result.spacing_source})" if result.spacing
                     else "no spacing: no mm (--spacing, DICOM or --ruler-mm)", result.spacing is None))
        text.append((f"labels: {result.labels}", False))     # whose conventions: the model's, or a site's
    return lines, text


def _pairs(pairs, result):
    """Landmark pairs of a tracing, in the result's own names (schema aliases resolved)."""
    schema = result._schema()
    for a, b in pairs:
        try:
            yield result.names[schema.index(a)], result.names[schema.index(b)]
        except KeyError:
            continue


def _measurement_line(name: str, e: Dict) -> str:
    unit = {"deg": " deg", "mm": " mm", "ratio": ""}[e["unit"]]
    fmt = "{:.2f}" if e["unit"] == "ratio" else "{:.1f}"
    # The ISBI class is decided by its own band, not by the textbook norm beside it: show the band with the class.
    # (OpenCV's fonts have no plus-minus sign, hence "sd".)
    cls = f"  ISBI {e['isbi_class']} {e['isbi_class_meaning']} ({e['isbi_band']})" if "isbi_class" in e else ""
    porion = f"  [porion: {e['porion']}]" if e.get("porion", "anatomical") != "anatomical" else ""
    return (f"{name} {fmt.format(e['value'])}{unit} (norm {fmt.format(e['norm_mean'])} sd {fmt.format(e['norm_sd'])})"
            f"{cls}{porion}" + ("  (check)" if e["doubtful"] else ""))
