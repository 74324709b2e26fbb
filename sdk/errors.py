"""Exceptions raised by the SDK. Every one names the input and what was expected."""


class CephaloError(Exception):
    """Base class of every error this project raises on purpose."""


class ImageError(CephaloError, ValueError):
    """An image could not be read, or is not something a cephalogram can be (empty, wrong dtype, absurd size)."""


class ModelError(CephaloError, ValueError):
    """A model file is missing, unreadable, or lacks the metadata of the model contract."""


class SchemaError(CephaloError, ValueError):
    """A landmark schema is unknown or malformed."""


class AnnotationError(CephaloError, ValueError):
    """An annotation file is malformed: missing or duplicate landmark, point outside the image, unreadable file."""


class BackendError(CephaloError, RuntimeError):
    """The requested inference backend is not installed or cannot run the model."""
