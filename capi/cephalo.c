/* cephalo.c: the C API (cephalo.h) over sdk.Detector, embedding CPython.
 *
 * Each call takes the GIL (PyGILState_Ensure) only while it talks to Python; the inference runtimes release it
 * while they compute, so host threads run side by side. The Python side is sdk/capi.py: it returns plain
 * (code, value) tuples, so no Python exception reaches this file except on a broken environment, which is turned
 * into CEPHALO_E_PYTHON with the exception's text.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cephalo.h"

#if defined(_MSC_VER)
#  define THREAD_LOCAL __declspec(thread)
#  include <windows.h>
static INIT_ONCE init_once = INIT_ONCE_STATIC_INIT;
static CRITICAL_SECTION init_lock;
static BOOL CALLBACK make_lock(PINIT_ONCE o, PVOID p, PVOID *c) { (void)o; (void)p; (void)c;
    InitializeCriticalSection(&init_lock); return TRUE; }
static void lock_init(void) { InitOnceExecuteOnce(&init_once, make_lock, NULL, NULL); EnterCriticalSection(&init_lock); }
static void unlock_init(void) { LeaveCriticalSection(&init_lock); }
#else
#  define THREAD_LOCAL _Thread_local
#  include <pthread.h>
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static void lock_init(void) { pthread_mutex_lock(&init_lock); }
static void unlock_init(void) { pthread_mutex_unlock(&init_lock); }
#endif

static THREAD_LOCAL char last_error[2048];

static cephalo_status fail(cephalo_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *cephalo_last_error(void) { return last_error; }

/* The pending Python exception as this thread's error (and cleared). Call with the GIL held. */
static cephalo_status fail_python(const char *what) {
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *text = value ? PyObject_Str(value) : NULL;
    const char *msg = text ? PyUnicode_AsUTF8(text) : NULL;
    fail(CEPHALO_E_PYTHON, "%s: %s: %s", what, type ? ((PyTypeObject *)type)->tp_name : "error",
         msg ? msg : "(no message)");
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
    return CEPHALO_E_PYTHON;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* The SDK's Python side, imported with the GIL held; NULL with this thread's error set. */
static PyObject *shim(void) {
    PyObject *m = PyImport_ImportModule("sdk.capi");
    if (!m) {
        PyObject *sys_exe = PySys_GetObject("executable");   /* borrowed */
        const char *exe = sys_exe && PyUnicode_Check(sys_exe) ? PyUnicode_AsUTF8(sys_exe) : "?";
        char where[512];
        snprintf(where, sizeof where, "cannot import the SDK (module sdk.capi) in the Python environment of %s; "
                 "install the cephalo package there, or name another with CEPHALO_PYTHON", exe ? exe : "?");
        fail_python(where);
    }
    return m;
}

cephalo_status cephalo_init(const char *python_executable) {
    last_error[0] = '\0';
    lock_init();
    if (Py_IsInitialized()) {
        unlock_init();
        return CEPHALO_OK;
    }
    const char *exe = python_executable && *python_executable ? python_executable : getenv("CEPHALO_PYTHON");
    if (exe && *exe && !file_exists(exe)) {
        unlock_init();
        return fail(CEPHALO_E_PYTHON, "Python executable %s (cephalo_init / CEPHALO_PYTHON) does not exist", exe);
    }
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;    /* the host owns its signals */
    config.parse_argv = 0;
    PyStatus status = PyStatus_Ok();
    if (exe && *exe)      /* its pyvenv.cfg / prefix decides sys.path, as when that python runs */
        status = PyConfig_SetBytesString(&config, &config.program_name, exe);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        unlock_init();
        return fail(CEPHALO_E_PYTHON, "cannot start Python%s%s: %s", exe ? " from " : "", exe ? exe : "",
                    status.err_msg ? status.err_msg : "unknown error");
    }
    PyObject *m = shim();
    cephalo_status rc = m ? CEPHALO_OK : CEPHALO_E_PYTHON;
    Py_XDECREF(m);
    PyEval_SaveThread();     /* release the GIL: every call, from any thread, takes it with PyGILState_Ensure */
    unlock_init();
    return rc;
}

/* The value of a (code, value) tuple from sdk/capi.py, or NULL with this thread's error set to the code and the
   message (borrowed reference; GIL held). */
static PyObject *unpack(PyObject *res, const char *what, cephalo_status *rc) {
    if (!PyTuple_Check(res) || PyTuple_Size(res) != 2) {
        *rc = fail(CEPHALO_E_PYTHON, "%s: the SDK answered something other than (code, value)", what);
        return NULL;
    }
    long code = PyLong_AsLong(PyTuple_GetItem(res, 0));
    PyObject *val = PyTuple_GetItem(res, 1);
    if (code != 0) {
        const char *msg = PyUnicode_Check(val) ? PyUnicode_AsUTF8(val) : NULL;
        *rc = fail((cephalo_status)code, "%s", msg ? msg : "(no message)");
        return NULL;
    }
    return val;
}

struct cephalo_detector {
    PyObject *det;           /* sdk.Detector */
};

cephalo_status cephalo_open(const char *model_path, const char *backend, int threads, cephalo_detector **out) {
    return cephalo_open_with(model_path, backend, threads, NULL, out);
}

cephalo_status cephalo_open_with(const char *model_path, const char *backend, int threads, const char *options_json,
                                 cephalo_detector **out) {
    last_error[0] = '\0';
    if (!out)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_open: out is NULL");
    *out = NULL;
    if (threads < 0)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_open: threads must be >= 0 (0 = all cores), got %d", threads);
    cephalo_status rc = cephalo_init(NULL);
    if (rc != CEPHALO_OK)
        return rc;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *m = shim();
    if (!m) {
        PyGILState_Release(gil);
        return CEPHALO_E_PYTHON;
    }
    PyObject *res = PyObject_CallMethod(m, "open_detector", "zziz", model_path, backend, threads, options_json);
    Py_DECREF(m);
    if (!res) {
        rc = fail_python("cephalo_open");
    } else {
        PyObject *val = unpack(res, "cephalo_open", &rc);
        if (val) {
            cephalo_detector *d = (cephalo_detector *)malloc(sizeof *d);
            if (!d) {
                rc = fail(CEPHALO_E_ARGUMENT, "cephalo_open: out of memory");
            } else {
                Py_INCREF(val);
                d->det = val;
                *out = d;
            }
        }
        Py_DECREF(res);
    }
    PyGILState_Release(gil);
    return rc;
}

/* The public struct first, so a cephalo_result* is also a result_impl*. */
typedef struct {
    cephalo_result pub;
    double *xy;
    float *scores, *reliability;
    char **names, **flags;
    char *spacing_source, *view, *status, *json;
    int n_meas;
    char **meas_names, **meas_units;
    double *meas_values;
} result_impl;

static char *dup_str(PyObject *s) {
    const char *c = s && PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : "";
    size_t n = strlen(c ? c : "");
    char *out = (char *)malloc(n + 1);
    if (out)
        memcpy(out, c ? c : "", n + 1);
    return out;
}

static char **dup_list(PyObject *list, int n) {
    char **out = (char **)calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    for (int i = 0; out && i < n; i++)
        out[i] = dup_str(PyList_GetItem(list, i));
    return out;
}

static void free_list(char **list, int n) {
    if (!list)
        return;
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void cephalo_result_free(cephalo_result *result) {
    result_impl *r = (result_impl *)result;
    if (!r)
        return;
    free(r->xy);
    free(r->scores);
    free(r->reliability);
    free_list(r->names, r->pub.k);
    free_list(r->flags, r->pub.k);
    free(r->spacing_source);
    free(r->view);
    free(r->status);
    free(r->json);
    free_list(r->meas_names, r->n_meas);
    free_list(r->meas_units, r->n_meas);
    free(r->meas_values);
    free(r);
}

static void *copy_bytes(PyObject *b, size_t want) {
    if (!PyBytes_Check(b) || (size_t)PyBytes_Size(b) != want || want == 0)
        return NULL;
    void *out = malloc(want);
    if (out)
        memcpy(out, PyBytes_AsString(b), want);
    return out;
}

/* The (0, values) tuple of sdk.capi.detect as a result_impl; NULL if it is malformed. GIL held. */
static result_impl *build_result(PyObject *v) {
    if (!PyTuple_Check(v) || PyTuple_Size(v) != 17)
        return NULL;
    result_impl *r = (result_impl *)calloc(1, sizeof *r);
    if (!r)
        return NULL;
    PyObject *names = PyTuple_GetItem(v, 3);
    int k = (int)PyList_Size(names);
    r->pub.k = k;
    r->xy = (double *)copy_bytes(PyTuple_GetItem(v, 0), sizeof(double) * 2 * (size_t)k);
    r->scores = (float *)copy_bytes(PyTuple_GetItem(v, 1), sizeof(float) * (size_t)k);
    if (PyBytes_Size(PyTuple_GetItem(v, 2)) > 0)
        r->reliability = (float *)copy_bytes(PyTuple_GetItem(v, 2), sizeof(float) * (size_t)k);
    r->names = dup_list(names, k);
    r->flags = dup_list(PyTuple_GetItem(v, 4), k);
    r->pub.spacing_mm = PyFloat_AsDouble(PyTuple_GetItem(v, 5));
    r->spacing_source = dup_str(PyTuple_GetItem(v, 6));
    r->view = dup_str(PyTuple_GetItem(v, 7));
    r->status = dup_str(PyTuple_GetItem(v, 8));
    r->pub.is_cephalogram = (int)PyLong_AsLong(PyTuple_GetItem(v, 9));
    r->pub.low_confidence = (int)PyLong_AsLong(PyTuple_GetItem(v, 10));
    r->pub.confidence = PyFloat_AsDouble(PyTuple_GetItem(v, 11));
    PyObject *mn = PyTuple_GetItem(v, 12), *mv = PyTuple_GetItem(v, 13);
    r->n_meas = (int)PyList_Size(mn);
    r->meas_names = dup_list(mn, r->n_meas);
    r->meas_units = dup_list(PyTuple_GetItem(v, 14), r->n_meas);
    r->meas_values = (double *)calloc((size_t)(r->n_meas > 0 ? r->n_meas : 1), sizeof(double));
    for (int i = 0; r->meas_values && i < r->n_meas; i++)
        r->meas_values[i] = PyFloat_AsDouble(PyList_GetItem(mv, i));
    r->json = dup_str(PyTuple_GetItem(v, 15));
    PyObject *mp = PyTuple_GetItem(v, 16);           /* () or (x, y, certain) */
    if (PyTuple_Check(mp) && PyTuple_Size(mp) == 3) {
        r->pub.has_machine_porion = 1;
        r->pub.machine_porion[0] = PyFloat_AsDouble(PyTuple_GetItem(mp, 0));
        r->pub.machine_porion[1] = PyFloat_AsDouble(PyTuple_GetItem(mp, 1));
        r->pub.machine_porion_certain = (int)PyLong_AsLong(PyTuple_GetItem(mp, 2));
    }
    r->pub.xy = r->xy;
    r->pub.scores = r->scores;
    r->pub.reliability = r->reliability;
    r->pub.names = (const char *const *)r->names;
    r->pub.point_flags = (const char *const *)r->flags;
    r->pub.spacing_source = r->spacing_source;
    r->pub.view = r->view;
    r->pub.status = r->status;
    if (!r->xy || !r->scores || !r->names || !r->flags || !r->json || !r->meas_values || PyErr_Occurred()) {
        PyErr_Clear();
        cephalo_result_free(&r->pub);
        return NULL;
    }
    return r;
}

cephalo_status cephalo_detect(cephalo_detector *detector, const void *pixels, int width, int height,
                              int stride_bytes, int bits, int channels, double spacing_mm, cephalo_result **out) {
    last_error[0] = '\0';
    if (!out)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_detect: out is NULL");
    *out = NULL;
    if (!detector || !detector->det)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_detect: detector is NULL (open one with cephalo_open)");
    if (!pixels)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_detect: pixels is NULL");
    if (width <= 0 || height <= 0)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_detect: image size %d x %d must be positive", width, height);
    if (bits != 8 && bits != 16)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_detect: bits must be 8 or 16, got %d", bits);
    if (channels != 1 && channels != 3 && channels != 4)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_detect: channels must be 1, 3 or 4, got %d", channels);
    long long row = (long long)width * channels * (bits / 8);
    if (stride_bytes < row)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_detect: stride %d bytes is smaller than a row (%d x %d channels x "
                    "%d bytes = %lld)", stride_bytes, width, channels, bits / 8, row);
    if (bits == 16 && stride_bytes % 2)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_detect: a 16-bit image needs an even stride, got %d",
                    stride_bytes);
    if (spacing_mm != spacing_mm)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_detect: spacing_mm is NaN");
    long long size = (long long)stride_bytes * (height - 1) + row;   /* the last row need not be padded */
    PyGILState_STATE gil = PyGILState_Ensure();
    cephalo_status rc = CEPHALO_OK;
    PyObject *m = shim();
    PyObject *view = m ? PyMemoryView_FromMemory((char *)pixels, (Py_ssize_t)size, PyBUF_READ) : NULL;
    PyObject *res = view ? PyObject_CallMethod(m, "detect", "OOiiiiid", detector->det, view, width, height,
                                               stride_bytes, bits, channels, spacing_mm) : NULL;
    if (!res) {
        rc = m ? fail_python("cephalo_detect") : CEPHALO_E_PYTHON;
    } else {
        PyObject *val = unpack(res, "cephalo_detect", &rc);
        if (val) {
            result_impl *r = build_result(val);
            if (r)
                *out = &r->pub;
            else
                rc = fail(CEPHALO_E_PYTHON, "cephalo_detect: the SDK returned a malformed result (out of memory?)");
        }
    }
    Py_XDECREF(res);
    Py_XDECREF(view);
    Py_XDECREF(m);
    PyGILState_Release(gil);
    return rc;
}

cephalo_status cephalo_measurement(const cephalo_result *result, const char *name, double *value,
                                   const char **unit) {
    last_error[0] = '\0';
    const result_impl *r = (const result_impl *)result;
    if (!r || !name || !value)
        return fail(CEPHALO_E_ARGUMENT, "cephalo_measurement: result, name and value must not be NULL");
    for (int i = 0; i < r->n_meas; i++) {
        if (strcmp(r->meas_names[i], name) == 0) {
            *value = r->meas_values[i];
            if (unit)
                *unit = r->meas_units[i];
            return CEPHALO_OK;
        }
    }
    return fail(CEPHALO_E_NOT_FOUND, "no measurement '%s' in this result (%d available%s)", name, r->n_meas,
                r->pub.is_cephalogram ? "" : "; the image was not read as a cephalogram");
}

const char *cephalo_result_json(const cephalo_result *result) {
    return result ? ((const result_impl *)result)->json : NULL;
}

void cephalo_close(cephalo_detector *detector) {
    if (!detector)
        return;
    if (Py_IsInitialized()) {
        PyGILState_STATE gil = PyGILState_Ensure();
        Py_XDECREF(detector->det);
        PyGILState_Release(gil);
    }
    free(detector);
}
