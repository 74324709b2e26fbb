"""A result as a DICOM Grayscale Softcopy Presentation State (GSPS): the tracing as graphics and text in layers over
the original pixels, which PACS viewers draw and toggle (Weasis, OHIF and most others draw a GSPS; few draw an SR's
coordinates).

Layers: the landmarks (a point and its number each), the doubtful or repaired ones (their own layer and colour),
the tracing's lines, the ruler's P1/P2 and the ear rods where found, and the measurements as a text block that
names the labels, site and spacing source. Coordinates are in the referenced image's PIXEL units, whose origin is
the top-left corner of the top-left pixel (PS3.3 C.10.5.1.2): a pixel centre (x, y) of the SDK is (x + 0.5, y + 0.5)
here. The window of the image, where it has one, is the state's. UIDs follow the report's: a rerun replaces.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .dicom_sr import HALF, MANUFACTURER, require_pacs, uid

SOP_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
# CIELab colours of the layers (PS3.3 C.10.7: L* a* b* scaled to 0-65535): green points, orange doubts, cyan lines
COLOURS = {"LANDMARKS": (88.0, -60.0, 60.0), "DOUBTFUL": (70.0, 40.0, 75.0), "TRACING": (85.0, -35.0, -15.0),
           "RULER": (80.0, 0.0, 80.0), "EAR RODS": (60.0, 60.0, -55.0), "MEASUREMENTS": (95.0, 0.0, 0.0)}
LAYERS = tuple(COLOURS)
RING_POINTS = 48                # a ring drawn as a closed polyline (CIRCLE is not drawn by every viewer)


def presentation_state(res, source, model: str, analyses: Optional[Sequence[str]] = None, version: str = ""):
    """The GSPS of ``res`` (an ``sdk.Landmarks``) over ``source`` (the pydicom Dataset of the image read: the DICOM
    input, or :func:`sdk.dicom_sr.source_dataset` of another format), for the measurements of ``analyses``."""
    from .tracing import tracing

    hd = require_pacs()
    key = f"{source.SOPInstanceUID}|{model}|{res.labels}"
    layers = {name: hd.pr.GraphicLayer(layer_name=name, order=i + 1, display_color=hd.color.CIELabColor(*COLOURS[name]),
                                       description=_DESCRIPTIONS[name])
              for i, name in enumerate(LAYERS)}
    graphics: Dict[str, List] = {name: [] for name in LAYERS}
    texts: Dict[str, List] = {name: [] for name in LAYERS}
    xy = np.asarray(res.xy, np.float64) + HALF
    cols, rows = float(source.Columns), float(source.Rows)

    def inside(p: np.ndarray) -> bool:      # a graphic must lie on the image (PS3.3 C.10.5.1.2)
        p = np.asarray(p, np.float64).reshape(-1, 2)
        return bool(np.isfinite(p).all() and (p[:, 0] >= 0).all() and (p[:, 0] <= cols).all()
                    and (p[:, 1] >= 0).all() and (p[:, 1] <= rows).all())

    doubtful = np.asarray(res.flagged, bool) | np.asarray(res.repaired or np.zeros(len(xy), bool), bool)
    outside = [i for i in range(len(xy)) if not inside(xy[i])]
    for i, (x, y) in enumerate(xy):
        if i in outside:
            continue
        layer = "DOUBTFUL" if doubtful[i] else "LANDMARKS"
        graphics[layer].append(_point(hd, x, y))
        texts[layer].append(hd.pr.TextObject(str(i + 1), units="PIXEL", anchor_point=(float(x), float(y)),
                                             anchor_point_visible=True))
    lines, text = tracing(res, analyses)
    for a, b in lines:
        if inside(xy[[a, b]]):
            graphics["TRACING"].append(hd.pr.GraphicObject("POLYLINE", xy[[a, b]], units="PIXEL"))
    if res.ruler is not None:
        ends = np.array([res.ruler["p1"], res.ruler["p2"]], np.float64) + HALF
        if inside(ends):
            graphics["RULER"].append(hd.pr.GraphicObject("POLYLINE", ends, units="PIXEL"))
            for name, (x, y) in zip(("P1", "P2"), ends):
                texts["RULER"].append(hd.pr.TextObject(name, units="PIXEL", anchor_point=(float(x), float(y))))
    if res.ear_rods is not None:
        rings, mp = res.ear_rods.drawn()
        for cx, cy, r in rings:
            t = np.linspace(0, 2 * np.pi, RING_POINTS + 1)
            ring = np.c_[cx + HALF + r * np.cos(t), cy + HALF + r * np.sin(t)]
            if inside(ring):
                graphics["EAR RODS"].append(hd.pr.GraphicObject("POLYLINE", ring, units="PIXEL"))
        x, y = np.asarray(mp, np.float64) + HALF
        if inside((x, y)):
            graphics["EAR RODS"].append(_point(hd, x, y))
            texts["EAR RODS"].append(hd.pr.TextObject("MPo", units="PIXEL", anchor_point=(float(x), float(y))))
    lines_text = [t for t, _ in text]
    if outside:
        lines_text.insert(0, f"not drawn, outside the image: {', '.join(str(i + 1) for i in outside)}")
    texts["MEASUREMENTS"] = _text_block(hd, lines_text, source)
    refs = [source]
    annotations = [hd.pr.GraphicAnnotation(referenced_images=refs, graphic_layer=layers[name],
                                           graphic_objects=graphics[name] or None, text_objects=texts[name] or None)
                   for name in LAYERS if graphics[name] or texts[name]]
    voi = None
    if "WindowCenter" in source and "WindowWidth" in source:
        voi = [hd.pr.SoftcopyVOILUTTransformation(window_center=_first(source.WindowCenter),
                                                  window_width=_first(source.WindowWidth))]
    state = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=refs, series_instance_uid=uid(key, "gsps series"), series_number=902,
        sop_instance_uid=uid(key, "gsps"), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=model[:64], software_versions=version or "0", device_serial_number="0",
        content_label="CEPHALO", content_description=f"landmarks, {res.labels}"[:64],
        graphic_annotations=annotations, graphic_layers=[layers[n] for n in LAYERS if graphics[n] or texts[n]],
        voi_lut_transformations=voi)
    state.SeriesDescription = "cephalo presentation state"
    state.BodyPartExamined = "HEAD"             # not a paired part: no laterality is owed (General Series)
    return state


_DESCRIPTIONS = {"LANDMARKS": "landmarks read", "DOUBTFUL": "landmarks to check, or repaired",
                 "TRACING": "the measurements' lines", "RULER": "the ruler's P1 and P2",
                 "EAR RODS": "the ear rods and the machine porion", "MEASUREMENTS": "measurements, labels, spacing"}


def _point(hd, x: float, y: float):
    return hd.pr.GraphicObject("POINT", np.array([[x, y]]), units="PIXEL")


def _first(v) -> float:
    return float(v[0]) if hasattr(v, "__len__") and not isinstance(v, str) else float(v)


def _text_block(hd, lines: Sequence[str], source) -> List:
    """The measurements' lines stacked down the image's left edge, one text object each."""
    cols, rows = int(source.Columns), int(source.Rows)
    step = max(12.0, rows / 60.0)
    out = []
    for i, line in enumerate(lines):
        top = step * (i + 0.5)
        if top + step > rows:
            break
        out.append(hd.pr.TextObject(line[:1024], units="PIXEL", text_justification="LEFT",
                                    bounding_box=(2.0, top, min(cols - 2.0, cols * 0.6), top + step)))
    return out


def read_points(ds) -> Tuple[Dict[int, Tuple[float, float]], List[str]]:
    """A state's landmark points back: {landmark number: (x, y) SDK pixels} from the LANDMARKS and DOUBTFUL
    layers (each point and the number anchored on it), and the layers present."""
    points: Dict[int, Tuple[float, float]] = {}
    for ann in ds.GraphicAnnotationSequence:
        if ann.GraphicLayer not in ("LANDMARKS", "DOUBTFUL"):
            continue
        pts = [tuple(float(v) - HALF for v in g.GraphicData[:2]) for g in ann.get("GraphicObjectSequence", [])
               if g.GraphicType == "POINT"]
        nums = [int(t.UnformattedTextValue) for t in ann.get("TextObjectSequence", [])]
        points.update(zip(nums, pts))
    return points, [la.GraphicLayer for la in ds.GraphicLayerSequence]
