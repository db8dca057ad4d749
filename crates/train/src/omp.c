/*
 * Runs a loop's pieces on libtorch's own OpenMP threads.
 *
 * embedlab's fused Adam update is written in Rust; run on a second thread
 * pool beside libtorch's, the two fight for the cores (libgomp's idle
 * workers spin for a while after every parallel region). This shim opens
 * an OpenMP parallel region from the caller's thread, so the pieces run on
 * the same libgomp team libtorch uses: build.rs links the libgomp.so.1 that
 * ships with libtorch, which the loader shares with libtorch_cpu.
 */
#include <omp.h>
#include <stdint.h>

typedef double (*embedlab_piece_fn)(void *ctx, int64_t begin, int64_t end);

/* Splits [0, n) into one contiguous piece per thread (piece boundaries a
 * multiple of `align`), calls f on each and returns the sum of the results.
 * Runs f on the whole range in the caller's thread when one thread would
 * do, or when already inside a parallel region. */
double embedlab_omp_pieces(int64_t n, int64_t align, embedlab_piece_fn f, void *ctx) {
    int threads = omp_get_max_threads();
    if (threads < 2 || omp_in_parallel() || n < 2 * align) {
        return f(ctx, 0, n);
    }
    double total = 0.0;
#pragma omp parallel reduction(+ : total)
    {
        int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t per = (n + nt - 1) / nt;
        per = (per + align - 1) / align * align;
        int64_t b = t * per, e = b + per < n ? b + per : n;
        if (b < e) {
            total += f(ctx, b, e);
        }
    }
    return total;
}

int embedlab_omp_max_threads(void) { return omp_get_max_threads(); }
