"""Cephalometric landmark SDK: numpy + onnxruntime or OpenVINO; never imports torch."""
from .errors import AnnotationError, BackendError, CephaloError, ImageError, ModelError, SchemaError
from .schemas import AARIZ29, CEPH31, ISBI19, Schema, get_schema

__version__ = "0.1.0"
