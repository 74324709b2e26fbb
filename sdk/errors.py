"""Exceptions raised by the SDK. Every one names the input and what was expected."""


# A lower library's message (a decoder's, a runtime's) is quoted up to this many characters: enough to tell what
# went wrong, short enough for one line of a log or an HTTP answer.
CAUSE_CHARS = 300


def cause(e: BaseException) -> str:
    """``e``'s message, cut to :data:`CAUSE_CHARS`."""
    return str(e)[:CAUSE_CHARS]


class CephaloError(Exception):
    """Base class of every error this project raises on purpose."""


class ImageError(CephaloError, ValueError):
    """An image could not be read, or is not something a cephalogram can be (empty, wrong dtype, absurd size)."""


class ImageTooLarge(ImageError):
    """An image over the pixel or file-size limits, or whose header declares more pixels than its bytes could hold
    (a decompression bomb): refused before decoding."""


class ModelError(CephaloError, ValueError):
    """A model file is missing, unreadable, or lacks the metadata of the model contract."""


class SchemaError(CephaloError, ValueError):
    """A landmark schema is unknown or malformed."""


class AnnotationError(CephaloError, ValueError):
    """An annotation file is malformed: missing or duplicate landmark, point outside the image, unreadable file."""


class BackendError(CephaloError, RuntimeError):
    """The requested inference backend is not installed or cannot run the model."""


class BatchError(CephaloError):
    """Some images of a ``Detector.batch`` call failed. ``results``: every image's Landmarks or its error, in the
    order given; ``failed``: (index, error) of the failures."""

    def __init__(self, results, failed):
        self.results, self.failed = results, failed
        shown = "; ".join(str(e) for _, e in failed[:5]) + ("; ..." if len(failed) > 5 else "")
        super().__init__(f"{len(failed)} of {len(results)} images failed: {shown}")
