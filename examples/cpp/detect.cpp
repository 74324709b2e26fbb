// Landmarks of an 8-bit gray PGM through the C API from C++, with RAII ownership and measurements by name.
//
//   detect_cpp IMAGE.pgm [SPACING_MM]
//
// Build: python capi/build.py --examples (or CMake: capi/CMakeLists.txt).
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cephalo.h"

namespace {

struct DetectorDeleter { void operator()(cephalo_detector *d) const { cephalo_close(d); } };
struct ResultDeleter { void operator()(cephalo_result *r) const { cephalo_result_free(r); } };
using Detector = std::unique_ptr<cephalo_detector, DetectorDeleter>;
using Result = std::unique_ptr<cephalo_result, ResultDeleter>;

void check(cephalo_status rc, const char *what) {
    if (rc != CEPHALO_OK) throw std::runtime_error(std::string(what) + ": " + cephalo_last_error());
}

std::vector<unsigned char> read_pgm8(const std::string &path, int &w, int &h) {
    std::ifstream f(path, std::ios::binary);
    std::string magic;
    int maxval = 0;
    if (!(f >> magic >> w >> h >> maxval) || magic != "P5" || maxval > 255 || w <= 0 || h <= 0)
        throw std::runtime_error(path + ": not an 8-bit binary PGM");
    f.get();
    std::vector<unsigned char> px(static_cast<size_t>(w) * h);
    if (!f.read(reinterpret_cast<char *>(px.data()), static_cast<std::streamsize>(px.size())))
        throw std::runtime_error(path + ": truncated");
    return px;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s IMAGE.pgm [SPACING_MM]\n", argv[0]);
        return 2;
    }
    try {
        int w = 0, h = 0;
        std::vector<unsigned char> px = read_pgm8(argv[1], w, h);
        cephalo_detector *raw = nullptr;
        check(cephalo_open(nullptr, "onnxruntime", 2, &raw), "open");
        Detector det(raw);
        cephalo_result *rr = nullptr;
        check(cephalo_detect(det.get(), px.data(), w, h, w, 8, 1, argc > 2 ? std::stod(argv[2]) : 0.0, &rr),
              "detect");
        Result res(rr);
        std::printf("%d landmarks, status %s\n", res->k, res->status);
        for (const char *name : {"SNA", "SNB", "ANB", "FMA"}) {
            double v = 0;
            const char *unit = "";
            if (cephalo_measurement(res.get(), name, &v, &unit) == CEPHALO_OK)
                std::printf("%s %.2f %s\n", name, v, unit);
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
