/* Test driver for the C API (tests/test_capi.py builds and runs it).
 *
 *   check args IMAGE.pgm            bad arguments: each must return its error code with a message
 *   check threads IMAGE.pgm N M     N threads x M calls on one handle, then N threads on N handles, all started
 *                                   together (a barrier); every result must equal the first, bit for bit
 *   check open MODEL                open a model path: prints the status code and message
 *   check time IMAGE.pgm N          p50 of N calls in microseconds
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cephalo.h"

static unsigned char *px;
static int W, H;
static double first[64];
static int K;
static pthread_barrier_t start;
static cephalo_detector *shared_det;
static int mismatches, failures;
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned char *read_pgm8(const char *path, int *w, int *h) {
    FILE *f = fopen(path, "rb");
    int maxval = 0;
    char magic[3] = {0};
    if (!f || fscanf(f, "%2s %d %d %d", magic, w, h, &maxval) != 4 || strcmp(magic, "P5") || maxval > 255) {
        if (f)
            fclose(f);
        return NULL;
    }
    fgetc(f);
    unsigned char *p = malloc((size_t)(*w) * (size_t)(*h));
    if (fread(p, 1, (size_t)(*w) * (size_t)(*h), f) != (size_t)(*w) * (size_t)(*h)) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static void expect(const char *what, cephalo_status got, cephalo_status want) {
    const char *msg = cephalo_last_error();
    printf("%s: %d %s [%s]\n", what, (int)got, got == want && msg[0] ? "OK" : "WRONG", msg);
}

static int run_args(void) {
    cephalo_detector *d = NULL;
    cephalo_result *r = NULL;
    expect("open null out", cephalo_open(NULL, "onnxruntime", 1, NULL), CEPHALO_E_ARGUMENT);
    expect("open negative threads", cephalo_open(NULL, "onnxruntime", -1, &d), CEPHALO_E_ARGUMENT);
    expect("open bad backend", cephalo_open(NULL, "tensorflow", 1, &d), CEPHALO_E_ARGUMENT);
    if (cephalo_open(NULL, "onnxruntime", 1, &d) != CEPHALO_OK) {
        printf("open: FAILED %s\n", cephalo_last_error());
        return 1;
    }
    expect("null detector", cephalo_detect(NULL, px, W, H, W, 8, 1, 0, &r), CEPHALO_E_ARGUMENT);
    expect("null pixels", cephalo_detect(d, NULL, W, H, W, 8, 1, 0, &r), CEPHALO_E_ARGUMENT);
    expect("null out", cephalo_detect(d, px, W, H, W, 8, 1, 0, NULL), CEPHALO_E_ARGUMENT);
    expect("zero width", cephalo_detect(d, px, 0, H, W, 8, 1, 0, &r), CEPHALO_E_ARGUMENT);
    expect("negative height", cephalo_detect(d, px, W, -5, W, 8, 1, 0, &r), CEPHALO_E_ARGUMENT);
    expect("12 bits", cephalo_detect(d, px, W, H, W, 12, 1, 0, &r), CEPHALO_E_ARGUMENT);
    expect("5 channels", cephalo_detect(d, px, W / 5, H, W, 8, 5, 0, &r), CEPHALO_E_ARGUMENT);
    expect("stride below a row", cephalo_detect(d, px, W, H, W - 1, 8, 1, 0, &r), CEPHALO_E_ARGUMENT);
    expect("tiny image", cephalo_detect(d, px, 8, 8, W, 8, 1, 0, &r), CEPHALO_E_IMAGE);
    expect("spacing in px/mm", cephalo_detect(d, px, W, H, W, 8, 1, 10.0, &r), CEPHALO_E_ARGUMENT);
    if (cephalo_detect(d, px, W, H, W, 8, 1, 0.4, &r) != CEPHALO_OK) {
        printf("detect: FAILED %s\n", cephalo_last_error());
        return 1;
    }
    double v;
    expect("unknown measurement", cephalo_measurement(r, "XYZ", &v, NULL), CEPHALO_E_NOT_FOUND);
    expect("measurement null name", cephalo_measurement(r, NULL, &v, NULL), CEPHALO_E_ARGUMENT);
    printf("null result json: %s\n", cephalo_result_json(NULL) == NULL ? "OK" : "WRONG");
    cephalo_result_free(r);
    cephalo_result_free(NULL);
    cephalo_close(d);
    cephalo_close(NULL);
    return 0;
}

static void compare(const cephalo_result *r) {
    pthread_mutex_lock(&count_lock);
    if (r->k != K || memcmp(r->xy, first, sizeof(double) * 2 * (size_t)K) != 0)
        mismatches++;
    pthread_mutex_unlock(&count_lock);
}

static int calls;

static void *on_shared(void *arg) {
    (void)arg;
    pthread_barrier_wait(&start);
    for (int i = 0; i < calls; i++) {
        cephalo_result *r = NULL;
        if (cephalo_detect(shared_det, px, W, H, W, 8, 1, 0, &r) != CEPHALO_OK) {
            pthread_mutex_lock(&count_lock);
            failures++;
            pthread_mutex_unlock(&count_lock);
            continue;
        }
        compare(r);
        cephalo_result_free(r);
    }
    return NULL;
}

static void *on_own(void *arg) {
    (void)arg;
    cephalo_detector *d = NULL;
    int ok = cephalo_open(NULL, "onnxruntime", 1, &d) == CEPHALO_OK;
    pthread_barrier_wait(&start);
    for (int i = 0; ok && i < calls; i++) {
        cephalo_result *r = NULL;
        if (cephalo_detect(d, px, W, H, W, 8, 1, 0, &r) != CEPHALO_OK) {
            ok = 0;
            break;
        }
        compare(r);
        cephalo_result_free(r);
    }
    if (!ok) {
        pthread_mutex_lock(&count_lock);
        failures++;
        pthread_mutex_unlock(&count_lock);
    }
    cephalo_close(d);
    return NULL;
}

static int run_threads(int n, int m) {
    calls = m;
    if (cephalo_open(NULL, "onnxruntime", 1, &shared_det) != CEPHALO_OK) {
        printf("open: FAILED %s\n", cephalo_last_error());
        return 1;
    }
    cephalo_result *r = NULL;
    if (cephalo_detect(shared_det, px, W, H, W, 8, 1, 0, &r) != CEPHALO_OK) {
        printf("detect: FAILED %s\n", cephalo_last_error());
        return 1;
    }
    K = r->k;
    memcpy(first, r->xy, sizeof(double) * 2 * (size_t)K);
    cephalo_result_free(r);
    pthread_t t[16];
    for (int mode = 0; mode < 2; mode++) {
        pthread_barrier_init(&start, NULL, (unsigned)n);
        for (int i = 0; i < n; i++)
            pthread_create(&t[i], NULL, mode == 0 ? on_shared : on_own, NULL);
        for (int i = 0; i < n; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
    }
    cephalo_close(shared_det);
    printf("threads %d calls %d mismatches %d failures %d\n", n, m, mismatches, failures);
    return mismatches || failures;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static int run_time(int n) {
    cephalo_detector *d = NULL;
    if (cephalo_open(NULL, "onnxruntime", 2, &d) != CEPHALO_OK)
        return 1;
    long long *us = malloc(sizeof(long long) * (size_t)n);
    for (int i = -3; i < n; i++) {
        struct timespec a, b;
        cephalo_result *r = NULL;
        clock_gettime(CLOCK_MONOTONIC, &a);
        cephalo_detect(d, px, W, H, W, 8, 1, 0, &r);
        clock_gettime(CLOCK_MONOTONIC, &b);
        cephalo_result_free(r);
        if (i >= 0)
            us[i] = (b.tv_sec - a.tv_sec) * 1000000LL + (b.tv_nsec - a.tv_nsec) / 1000;
    }
    qsort(us, (size_t)n, sizeof(long long), cmp_ll);
    printf("p50_us %lld\n", us[n / 2]);
    free(us);
    cephalo_close(d);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "open") == 0) {
        cephalo_detector *d = NULL;
        cephalo_status rc = cephalo_open(argv[2], "onnxruntime", 1, &d);
        printf("open %d [%s]\n", (int)rc, cephalo_last_error());
        cephalo_close(d);
        return 0;
    }
    if (argc < 3 || !(px = read_pgm8(argv[2], &W, &H))) {
        fprintf(stderr, "usage: check args|threads|time IMAGE.pgm [N [M]]\n");
        return 2;
    }
    if (strcmp(argv[1], "args") == 0)
        return run_args();
    if (strcmp(argv[1], "threads") == 0 && argc >= 5)
        return run_threads(atoi(argv[3]), atoi(argv[4]));
    if (strcmp(argv[1], "time") == 0 && argc >= 4)
        return run_time(atoi(argv[3]));
    return 2;
}
