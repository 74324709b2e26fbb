/* Landmarks of a PGM image (8- or 16-bit gray, binary P5) through the C API.
 *
 *   detect_pgm IMAGE.pgm [SPACING_MM] [MODEL.onnx]
 *
 * Prints one line per landmark: name, x, y (image pixels), score, flag; then SNA/SNB/ANB and the JSON size.
 * Build: python capi/build.py --examples (builds build/capi/detect_pgm); set CEPHALO_PYTHON to the python of the
 * environment that has the cephalo package when this program does not find it by itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cephalo.h"

/* A binary PGM: pixels in host order, 8 or 16 bits; NULL on failure. */
static void *read_pgm(const char *path, int *w, int *h, int *bits) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    int maxval = 0;
    char magic[3] = {0};
    if (fscanf(f, "%2s %d %d %d", magic, w, h, &maxval) != 4 || strcmp(magic, "P5") != 0 || *w <= 0 || *h <= 0 ||
        maxval <= 0 || maxval > 65535) {
        fclose(f);
        return NULL;
    }
    fgetc(f);                                   /* the single whitespace after maxval */
    *bits = maxval > 255 ? 16 : 8;
    size_t n = (size_t)(*w) * (size_t)(*h) * (size_t)(*bits / 8);
    unsigned char *px = (unsigned char *)malloc(n);
    if (!px || fread(px, 1, n, f) != n) {
        free(px);
        fclose(f);
        return NULL;
    }
    fclose(f);
    if (*bits == 16) {                          /* PGM stores 16-bit samples big-endian */
        unsigned short *p16 = (unsigned short *)px;
        for (size_t i = 0; i < n / 2; i++)
            p16[i] = (unsigned short)((px[2 * i] << 8) | px[2 * i + 1]);
    }
    return px;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s IMAGE.pgm [SPACING_MM] [MODEL.onnx]\n", argv[0]);
        return 2;
    }
    int w, h, bits;
    void *px = read_pgm(argv[1], &w, &h, &bits);
    if (!px) {
        fprintf(stderr, "%s: not a readable binary PGM (P5) file\n", argv[1]);
        return 2;
    }
    double spacing = argc > 2 ? atof(argv[2]) : 0.0;
    cephalo_detector *det = NULL;
    if (cephalo_open(argc > 3 ? argv[3] : NULL, "onnxruntime", 2, &det) != CEPHALO_OK) {
        fprintf(stderr, "open: %s\n", cephalo_last_error());
        free(px);
        return 1;
    }
    cephalo_result *res = NULL;
    cephalo_status rc = cephalo_detect(det, px, w, h, w * bits / 8, bits, 1, spacing, &res);
    if (rc != CEPHALO_OK) {
        fprintf(stderr, "detect (%d): %s\n", (int)rc, cephalo_last_error());
        cephalo_close(det);
        free(px);
        return 1;
    }
    printf("status %s view %s confidence %.4f\n", res->status, res->view, res->confidence);
    for (int i = 0; i < res->k; i++)
        printf("%s %.9f %.9f %.4f %s\n", res->names[i], res->xy[2 * i], res->xy[2 * i + 1], res->scores[i],
               res->point_flags[i][0] ? res->point_flags[i] : "-");
    const char *names[] = {"SNA", "SNB", "ANB"};
    for (int i = 0; i < 3; i++) {
        double v;
        const char *unit;
        if (cephalo_measurement(res, names[i], &v, &unit) == CEPHALO_OK)
            printf("%s %.3f %s\n", names[i], v, unit);
    }
    if (res->has_machine_porion)        /* the ear rods' top, when their ring(s) were found */
        printf("machine_porion %.3f %.3f %s\n", res->machine_porion[0], res->machine_porion[1],
               res->machine_porion_certain ? "certain" : "faint");
    else
        printf("machine_porion none\n");
    printf("json %zu bytes\n", strlen(cephalo_result_json(res)));
    cephalo_result_free(res);
    cephalo_close(det);
    free(px);
    return 0;
}
