"""Results as DICOM for a clinic's PACS (the ``pacs`` extra: highdicom): a Structured Report (TID 1500 Measurement
Report) and the tracing as a Secondary Capture image, in the study of the image read.

- Each landmark is a measurement group (TID 1410) with its SCOORD POINT on the source image, its reliability
  (a NUM), and qualitative evaluations for a flag and a repair. Landmarks and measurements are named in this
  project's coding scheme ``99CEPHALO``, declared in the file; units are UCUM. The ear rods' top, when found, is a
  point of its own (tracking identifier ``machine_porion``, code ``MPo``), doubtful when a ring is faint.
- Each measurement (SNA, ANB, ...) is a NUM in one group (TID 1501), its ISBI 2015 class a qualitative evaluation.
- Whose conventions the points follow (``labels``: consensus, challenge, a site), the model and the spacing's
  source are the algorithm's parameters.
- A DICOM input keeps its patient and study. A JPEG/PNG input has none: it is first wrapped as a Secondary Capture
  with new UIDs and an empty patient module, which the report references and which is stored with it.

UIDs are derived from the image's bytes and the model, so a rerun writes the same instances: a PACS that receives
one twice keeps one copy. SCOORD coordinates are DICOM's (the top-left pixel's centre is (0.5, 0.5)); the SDK's
pixel centres are at integers, hence the half pixel each way.
"""
from __future__ import annotations

import hashlib
import io
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SCHEME = "99CEPHALO"
SCHEME_NAME = "cephalo landmarks, measurements and flags"
MACHINE_PORION = "machine_porion"
MANUFACTURER = "cephalo"
UNITS = {"deg": ("deg", "degree"), "mm": ("mm", "millimeter"), "ratio": ("1", "no units"), "%": ("%", "percent")}
HALF = 0.5
# A converted image has no patient: its name says so (a presentation state with an empty name is refused by
# checkers such as dcmtk's dcmpschk), its ID stays empty for the PACS to fill.
UNKNOWN_PATIENT = "UNKNOWN^"


def require_pacs():
    try:
        import highdicom as hd
    except ImportError as e:
        from .errors import CephaloError

        raise CephaloError('DICOM SR output needs the "pacs" extra: pip install ".[pacs]"') from e
    return hd


def uid(*parts: str) -> str:
    """A UID derived from ``parts`` (the same parts, the same UID: reruns do not duplicate instances): the 2.25
    root with a 128-bit number, as for UUIDs (PS3.5 B.2), taken from a hash of the parts."""
    digest = hashlib.sha256("|".join((MANUFACTURER, *parts)).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big') >> 1}"


def _code(value: str, meaning: str):
    from pydicom.sr.coding import Code

    return Code(value[:16], SCHEME, meaning[:64])


def source_dataset(data: bytes, gray: np.ndarray, facing_left: bool = False, spacing: Optional[float] = None,
                   spacing_source: Optional[str] = None):
    """The image the report refers to: the DICOM file itself, or a Secondary Capture of ``gray`` (new study, empty
    patient) for another format, carrying the ``spacing`` used (mm per pixel of ``gray``) as its Pixel Spacing with
    its calibration (``spacing_source``). Returns (dataset, whether it was made here)."""

    import pydicom

    digest = hashlib.sha256(data).hexdigest()
    if len(data) > 132 and data[128:132] == b"DICM":
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        meta = ds.file_meta
        # what a report must reference, from the file meta where the data set leaves it out
        for tag, fallback in (("SOPClassUID", meta.get("MediaStorageSOPClassUID")),
                              ("SOPInstanceUID", meta.get("MediaStorageSOPInstanceUID") or uid(digest, "source")),
                              ("StudyInstanceUID", uid(digest, "study")),
                              ("SeriesInstanceUID", uid(digest, "source series")), ("Modality", "OT")):
            if not ds.get(tag) and fallback:
                setattr(ds, tag, fallback)
        for tag in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "AccessionNumber", "StudyID", "ReferringPhysicianName"):
            if tag not in ds:
                setattr(ds, tag, "")
        return ds, False
    hd = require_pacs()
    ds = hd.sc.SCImage(pixel_array=np.ascontiguousarray(gray), photometric_interpretation="MONOCHROME2",
                       bits_allocated=8, coordinate_system="PATIENT", study_instance_uid=uid(digest, "study"),
                       series_instance_uid=uid(digest, "source series"), series_number=1,
                       sop_instance_uid=uid(digest, "source"), instance_number=1, manufacturer=MANUFACTURER,
                       patient_id="", patient_name=UNKNOWN_PATIENT, patient_orientation=("P" if facing_left else "A", "F"),
                       series_description="cephalogram (converted for its report)")
    ds.BodyPartExamined = "HEAD"                # not a paired part: no laterality is owed (General Series)
    if spacing is not None:
        ds.PixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
        if spacing_source == "ruler":           # calibrated on a fiducial: the type, and which (PS3.3 10.7.1.3)
            ds.PixelSpacingCalibrationType = "FIDUCIAL"
            ds.PixelSpacingCalibrationDescription = "the ruler's ticks read in the image"
    return ds, True


def measurement_report(res, source, model: str, version: str = ""):
    """The TID 1500 Measurement Report of ``res`` (an ``sdk.Landmarks``) on ``source`` (a pydicom Dataset)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.sr.codedict import codes

    hd = require_pacs()
    key = f"{source.SOPInstanceUID}|{model}|{res.labels}"
    where = hd.sr.SourceImageForRegion(referenced_sop_class_uid=source.SOPClassUID,
                                       referenced_sop_instance_uid=source.SOPInstanceUID)
    algorithm = hd.sr.AlgorithmIdentification(
        name=MANUFACTURER, version=version or "0",
        parameters=[f"model={model}", f"labels={res.labels}", f"spacing_source={res.spacing_source}",
                    f"status={res.status}"])
    groups: List = []
    for i, name in enumerate(res.names):
        x, y = (float(v) + HALF for v in res.xy[i])
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POINT,
                                   graphic_data=np.array([[x, y]]), source_image=where)
        evals = []
        flag = res.point_flags[i] if res.point_flags else ""
        if flag:
            evals.append(hd.sr.QualitativeEvaluation(_code("doubtful", "Doubtful landmark"),
                                                     _code(flag.replace(" ", "-"), flag)))
        if res.repaired and res.repaired[i]:
            evals.append(hd.sr.QualitativeEvaluation(_code("repaired", "Repaired landmark"),
                                                     _code("re-read", "read again where the others put it")))
        meas = []
        if res.reliability is not None:
            meas.append(hd.sr.Measurement(name=_code("reliability", "Probability within 4 mm"),
                                          value=float(res.reliability[i]), unit=_unit("ratio")))
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(key, "landmark", name), identifier=name),
            referenced_region=region, finding_type=_code(f"L{i + 1}", name), algorithm_id=algorithm,
            measurements=meas or None, qualitative_evaluations=evals or None))
    rods = res.ear_rods
    if rods is not None:        # the ear rods' top: a point of its own code beside the landmarks
        x, y = (float(v) + HALF for v in rods.machine_porion)
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POINT, graphic_data=np.array([[x, y]]),
                                   source_image=where)
        evals = [] if rods.certain else [hd.sr.QualitativeEvaluation(
            _code("doubtful", "Doubtful landmark"), _code("faint-ear-rod-ring", "faint ear-rod ring"))]
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(key, "landmark", MACHINE_PORION),
                                                         identifier=MACHINE_PORION),
            referenced_region=region, finding_type=_code("MPo", "machine porion (the ear rods' top)"),
            algorithm_id=algorithm, qualitative_evaluations=evals or None))
    meas, evals = [], []
    for name, e in res.measurements().items():
        meas.append(hd.sr.Measurement(name=_code(f"M-{name}", name), value=float(e["value"]), unit=_unit(e["unit"])))
        if "isbi_class" in e:
            evals.append(hd.sr.QualitativeEvaluation(
                _code(f"C-{name}", f"{name} ISBI 2015 class"),
                _code(e["isbi_class"], f"{e['isbi_class']} {e['isbi_class_meaning']}")))
    if meas:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(key, "measurements"),
                                                         identifier="cephalometric measurements"),
            algorithm_id=algorithm, measurements=meas, qualitative_evaluations=evals or None,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)]))
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=uid("device", model),
                                                                                  name=MANUFACTURER))
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=device),
                                     procedure_reported=_code("ceph-lat", "Lateral cephalometric analysis"),
                                     imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(evidence=[source], content=report, series_instance_uid=uid(key, "sr series"),
                                 series_number=900, sop_instance_uid=uid(key, "sr"), instance_number=1,
                                 manufacturer=MANUFACTURER, is_complete=True,
                                 series_description="cephalo landmarks and measurements")
    item = Dataset()
    item.CodingSchemeDesignator, item.CodingSchemeName = SCHEME, SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = DicomSequence([item])
    return sr


def _unit(unit: str):
    from pydicom.sr.coding import Code

    value, meaning = UNITS[unit]
    return Code(value, "UCUM", meaning)


def tracing_image(overlay_bgr: np.ndarray, source, model: str, labels: str = "consensus"):
    """The overlay (``Detector.draw``) as an RGB Secondary Capture in the source's study."""
    hd = require_pacs()
    key = f"{source.SOPInstanceUID}|{model}|{labels}"
    rgb = np.ascontiguousarray(overlay_bgr[:, :, ::-1])
    return hd.sc.SCImage.from_ref_dataset(ref_dataset=source, pixel_array=rgb, photometric_interpretation="RGB",
                                          bits_allocated=8, coordinate_system="PATIENT",
                                          series_instance_uid=uid(key, "tracing series"), series_number=901,
                                          sop_instance_uid=uid(key, "tracing"), instance_number=1,
                                          manufacturer=MANUFACTURER, patient_orientation=("A", "F"),
                                          series_description="cephalo tracing")


def read_report(ds) -> Tuple[Dict[str, Tuple[float, float]], Dict[str, Tuple[float, str, Optional[str]]]]:
    """A report's landmarks {name: (x, y) SDK pixels} and measurements {name: (value, unit, ISBI class)}."""
    points: Dict[str, Tuple[float, float]] = {}
    values: Dict[str, Tuple[float, str, Optional[str]]] = {}
    classes: Dict[str, str] = {}

    def walk(items: Sequence, group: Optional[str]) -> None:
        for it in items:
            kind = getattr(it, "ValueType", "")
            meaning = it.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in it else ""
            if kind == "TEXT" and meaning == "Tracking Identifier":
                group = it.TextValue
            elif kind == "SCOORD" and group is not None:
                x, y = (float(v) - HALF for v in it.GraphicData[:2])
                points[group] = (x, y)
            elif kind == "NUM" and meaning != "Probability within 4 mm":
                mv = it.MeasuredValueSequence[0]
                values[meaning] = (float(mv.NumericValue), mv.MeasurementUnitsCodeSequence[0].CodeValue, None)
            elif kind == "CODE" and meaning.endswith(" ISBI 2015 class"):
                classes[meaning[: -len(" ISBI 2015 class")]] = it.ConceptCodeSequence[0].CodeValue
            if "ContentSequence" in it:
                walk(it.ContentSequence, group)

    walk(ds.ContentSequence, None)
    return points, {k: (v, u, classes.get(k)) for k, (v, u, _) in values.items()}
