/* cephalo.h: the C API of the cephalometric landmark SDK (sdk.Detector embedded through CPython).
 *
 * A host opens a detector once, then calls cephalo_detect on its own pixel buffers from any number of threads.
 * Every function returns a cephalo_status; on failure cephalo_last_error() (per thread) says what went wrong,
 * naming the argument or file. Nothing is printed, no exception escapes, the process is never aborted.
 *
 * Python: if the host does not run Python, the first cephalo_init / cephalo_open starts an interpreter, using
 * the environment whose python executable is given to cephalo_init, or named by the CEPHALO_PYTHON environment
 * variable (e.g. /opt/app/.venv/bin/python), else the Python this library was built against. A host that already
 * runs Python (an embedding viewer, ctypes) keeps its interpreter; the library takes the GIL for each call.
 *
 * Build: python capi/build.py (or CMake, capi/CMakeLists.txt). Licence of the bundled model: CC BY-NC 4.0.
 */
#ifndef CEPHALO_H
#define CEPHALO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define CEPHALO_API __declspec(dllexport)
#else
#  define CEPHALO_API __attribute__((visibility("default")))
#endif

typedef enum {
    CEPHALO_OK = 0,
    CEPHALO_E_ARGUMENT = 1,   /* a NULL pointer, a size, bit depth, channel count or stride out of range */
    CEPHALO_E_IMAGE = 2,      /* the pixels cannot be read as an image */
    CEPHALO_E_MODEL = 3,      /* the model file is missing, unreadable or not a cephalo model */
    CEPHALO_E_PYTHON = 4,     /* the Python environment is missing or broken (cannot import the SDK) */
    CEPHALO_E_NOT_FOUND = 5   /* a measurement this result does not have */
} cephalo_status;

typedef struct cephalo_detector cephalo_detector;   /* opaque; thread-safe */

/* One image's landmarks. Owned by the library until cephalo_result_free. */
typedef struct {
    int k;                            /* number of landmarks */
    const double *xy;                 /* 2k values: x0, y0, x1, y1, ... in the buffer's pixels (pixel centres at
                                         integers) */
    const float *scores;              /* k heatmap peaks, 0..1 */
    const float *reliability;         /* k estimated P(within 4 mm of the clinicians' mean), or NULL */
    const char *const *names;         /* k landmark names, schema order */
    const char *const *point_flags;   /* k strings: "" or why the landmark is doubtful */
    double spacing_mm;                /* mm per pixel used for mm values, 0 if unknown */
    const char *spacing_source;       /* "caller", "dicom", "ruler" or "" */
    const char *view;                 /* "as given", "mirrored", "inverted", "rotated90", ... */
    const char *status;               /* "ok", "check" (some landmarks doubtful) or "flagged" */
    int is_cephalogram;               /* 0: not read as a lateral cephalogram; points and measurements mean nothing */
    int low_confidence;               /* 1: the model's confidence is below its bar in every view tried */
    double confidence;                /* mean heatmap peak */
    /* Appended in 0.2 (earlier fields keep their offsets): */
    int has_machine_porion;           /* 1: the ear rods' ring(s) were found near porion */
    double machine_porion[2];         /* x, y of the rods' top (the mean of two rings' tops), buffer pixels; else 0 */
    int machine_porion_certain;       /* 1: every ring's rim is clear; 0: faint, to check */
} cephalo_result;

/* Optional: start Python from the environment of `python_executable` (NULL: CEPHALO_PYTHON or the built-in one).
   Does nothing if Python already runs. */
CEPHALO_API cephalo_status cephalo_init(const char *python_executable);

/* Open a detector. model_path NULL: the bundled model; backend NULL or "auto" | "openvino" | "onnxruntime";
   threads 0: all cores. */
CEPHALO_API cephalo_status cephalo_open(const char *model_path, const char *backend, int threads,
                                        cephalo_detector **out);

/* cephalo_open with options as a JSON object (NULL or "{}": none), so that new options need no new function:
   "site" (a site profile's path, from `cephalo adapt`, or a convention's name: "challenge"), "labels" (its old
   name), "ruler_mm", "magnification", "repair", "precision", "porion" ("anatomical" or "machine": the ear rods'
   top), "ear_rods" (false: not looked for). An unknown key or a bad value is CEPHALO_E_ARGUMENT. */
CEPHALO_API cephalo_status cephalo_open_with(const char *model_path, const char *backend, int threads,
                                             const char *options_json, cephalo_detector **out);

/* Landmarks of one image: `pixels` rows of `width` pixels, `stride_bytes` apart (>= width * channels * bits/8),
   `bits` 8 or 16 (host byte order), `channels` 1 (gray), 3 (RGB) or 4 (RGBA). spacing_mm <= 0: none given. The
   buffer is read in place (no copy) during the call only. */
CEPHALO_API cephalo_status cephalo_detect(cephalo_detector *detector, const void *pixels, int width, int height,
                                          int stride_bytes, int bits, int channels, double spacing_mm,
                                          cephalo_result **out);

/* A measurement by name ("SNA", "ANB", "FMA", ...): its value and unit ("deg", "ratio", "mm"). */
CEPHALO_API cephalo_status cephalo_measurement(const cephalo_result *result, const char *name, double *value,
                                               const char **unit);

/* The result as the JSON document the CLI writes (UTF-8, owned by the result). */
CEPHALO_API const char *cephalo_result_json(const cephalo_result *result);

CEPHALO_API void cephalo_result_free(cephalo_result *result);
CEPHALO_API void cephalo_close(cephalo_detector *detector);

/* The last failure's message on this thread ("" if none). Valid until the thread's next call. */
CEPHALO_API const char *cephalo_last_error(void);

#ifdef __cplusplus
}
#endif
#endif /* CEPHALO_H */
