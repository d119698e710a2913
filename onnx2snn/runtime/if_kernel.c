/* The IF neuron over T steps in one pass (onnx2snn/runtime/kernel.py loads it with ctypes), and
   below it calibration's spike bits, histograms and MMSE search.

   A step's neurons are `rows` rows of `inner` values ([N, C, H, W] is N*C rows of H*W);
   x and spikes hold `steps` such steps one after the other (x_stride apart for x: 0 when the
   same current drives every step); membrane holds one step's worth, the starting membranes in,
   the last ones out. theta: one value (theta_mode 0), one per channel = per row modulo
   `channels` (mode 1), or one per value of a row (mode 2: [N, F] layers, a row per sample).
   A row of membranes stays in the cache over the steps, so x is read once and spikes written
   once; where the processor has AVX2, calibration's counts and bits (held_scan) and the step
   runtime's blocked layers (held_blocked) hold 32 membranes at a time in registers over all the
   steps of a call instead. The arithmetic is the artifact's, in the same order (bit-identical outputs):
       v = membrane + x;  fired = v >= theta;  spikes = fired * theta;
       membrane_next = v - spikes            (reset by subtraction)
                     | v - v * fired          (reset to zero)
   One thread a call: on a loaded machine a second thread that the scheduler parks makes a shared
   loop wait for it (two OpenMP threads took 19 ms a step for 1.6 M neurons, one took 2.3 ms).
   Calibration's large calls (counts, bits, unpacking, histograms, MMSE) are split by rows among
   the CPUs by their Python wrappers instead (runtime/kernel.py), each part a call of its own.
   Built with -fno-trapping-math so that the comparison vectorizes; it changes no value. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2 1 /* vector loops built for AVX2, run where the processor has it (vector_loops) */
#endif

/* whether the AVX2 loops run: the processor has AVX2 and the caller asks for them (``vector``:
   runtime/kernel.py's VECTOR, False to run the portable loops, whose results are the same) */
static int vector_loops(int vector) {
#ifdef HAVE_AVX2
    return vector && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
#else
    (void)vector;
    return 0;
#endif
}

static void row_subtract(const float *restrict x, float *restrict s, float *restrict v, const float *restrict th,
                         int64_t th_step, int64_t inner) {
    for (int64_t j = 0; j < inner; ++j) {
        const float vj = v[j] + x[j];
        const float t = th[j * th_step];
        const float sj = (float)(vj >= t) * t;
        s[j] = sj;
        v[j] = vj - sj;
    }
}

static void row_zero(const float *restrict x, float *restrict s, float *restrict v, const float *restrict th,
                     int64_t th_step, int64_t inner) {
    for (int64_t j = 0; j < inner; ++j) {
        const float vj = v[j] + x[j];
        const float t = th[j * th_step];
        const float fired = (float)(vj >= t);
        s[j] = fired * t;
        v[j] = vj - vj * fired;
    }
}

/* Spikes stored as bits (calibration keeps the spike trains of earlier layers): bit i of
   bits[i / 8] (least significant first, numpy's packbits with bitorder 'little') is spikes[i] > 0.
   put_bits writes the n values s[0..n) from bit ``offset``: whole bytes stored, the at most two
   bytes shared with the neighbouring runs OR-ed in (``bits`` starts zeroed). The flags go to
   ``f`` (n bytes) first, in vector instructions; eight of them make a byte in one
   multiplication: flag i at bit 8i times 2^(56-7i) lands on bit 56+i, and no two products meet */
static void put_bits(uint8_t *restrict bits, int64_t offset, const float *restrict s, uint8_t *restrict f, int64_t n) {
    for (int64_t j = 0; j < n; ++j) f[j] = s[j] > 0.0f;
    int64_t i = 0;
    for (; i < n && ((offset + i) & 7); ++i) bits[(offset + i) >> 3] |= (uint8_t)(f[i] << ((offset + i) & 7));
    uint8_t *out = bits + ((offset + i) >> 3);
    for (; i + 8 <= n; i += 8) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint64_t w;
        memcpy(&w, f + i, 8); /* flag i + k in byte k */
        *out++ = (uint8_t)((w * 0x0102040810204080ULL) >> 56);
#else
        uint8_t byte = 0;
        for (int k = 0; k < 8; ++k) byte |= (uint8_t)(f[i + k] << k);
        *out++ = byte;
#endif
    }
    for (; i < n; ++i) bits[(offset + i) >> 3] |= (uint8_t)(f[i] << ((offset + i) & 7));
}

enum { WRITE_SPIKES, COUNT_FIRINGS, PUT_BITS };

/* One IF layer over ``steps`` steps, row by row (rows ``first`` to ``last`` - 1: calls on other
   rows may run beside it, runtime/kernel.py), its membrane in place; each step of a row goes, as
   ``what`` says, to the spikes [T, rows * inner] (``out``, floats), to a count of firings per
   neuron (int32, added), or to bits (put_bits; ``out`` zeroed; rows beside each other share a
   byte where a step's first value of ``first`` is not a multiple of 8) */
#ifdef HAVE_AVX2
/* ``n`` flags ``f`` (the first least significant) OR-ed into ``bits`` from bit ``p`` on: the one or
   two bytes they fall in, and no other, hold bits of this call's rows only (the parts of a split
   call start on a byte at every step, runtime/kernel.py) */
static inline void or_bits(uint8_t *bits, int64_t p, unsigned f, int n) {
    const int k = (int)(p & 7);
    bits[p >> 3] |= (uint8_t)(f << k);
    if (k + n > 8) bits[(p >> 3) + 1] |= (uint8_t)(f >> (8 - k));
}

/* one step of 8 IF neurons whose membranes ``mem`` are held in a register: the spikes returned,
   the membranes updated; row_subtract / row_zero's arithmetic */
__attribute__((target("avx2"), always_inline)) static inline __m256 held_step(__m256 *mem, __m256 x, __m256 theta,
                                                                              int reset_to_zero) {
    const __m256 u = _mm256_add_ps(*mem, x);
    const __m256 fired = _mm256_and_ps(_mm256_cmp_ps(u, theta, _CMP_GE_OQ), _mm256_set1_ps(1.0f)); /* 1.0 or 0.0 */
    const __m256 spike = _mm256_mul_ps(fired, theta);
    *mem = _mm256_sub_ps(u, reset_to_zero ? _mm256_mul_ps(u, fired) : spike);
    return spike;
}

/* held_scan's block: W vectors of 8 neurons (W = 1: its first ``n`` lanes only), their currents
   from x on (x_stride apart a step), membranes v, thresholds th (one for all or one a neuron),
   over all steps, the membranes and counts in registers; the same arithmetic as row_subtract /
   row_zero, a count where the spike is not 0 and a bit where it is above 0, as scan has them.
   ``at``: the neurons' position in a step, ``m``: a step's neurons. */
__attribute__((target("avx2"), always_inline)) static inline void held_block(const int W, const int n, int what,
                                                                             const float *x, void *out, float *v,
                                                                             const float *th, int per_value,
                                                                             int64_t steps, int64_t x_stride,
                                                                             int64_t m, int64_t at,
                                                                             int reset_to_zero) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#define HELD_LOAD(p) (n == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes))
    __m256 mem[4], theta[4];
    __m256i count[4];
    for (int w = 0; w < W; ++w) {
        mem[w] = HELD_LOAD(v + 8 * w);
        theta[w] = per_value ? HELD_LOAD(th + 8 * w) : _mm256_set1_ps(th[0]);
        count[w] = _mm256_setzero_si256();
    }
    for (int64_t t = 0; t < steps; ++t) {
        const float *xt = x + t * x_stride;
        for (int w = 0; w < W; ++w) {
            const __m256 s = held_step(&mem[w], HELD_LOAD(xt + 8 * w), theta[w], reset_to_zero);
            if (what == COUNT_FIRINGS) /* a true comparison is -1 */
                count[w] = _mm256_sub_epi32(count[w], _mm256_castps_si256(_mm256_cmp_ps(s, zero, _CMP_NEQ_UQ)));
            else /* lanes past n: their bits cleared */
                or_bits((uint8_t *)out, t * m + at + 8 * w,
                        (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(s, zero, _CMP_GT_OQ)) & ((1u << n) - 1), n);
        }
    }
#undef HELD_LOAD
    for (int w = 0; w < W; ++w) {
        int32_t *c = (int32_t *)out + at + 8 * w;
        if (n == 8) {
            _mm256_storeu_ps(v + 8 * w, mem[w]);
            if (what == COUNT_FIRINGS)
                _mm256_storeu_si256((__m256i *)c, _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)c), count[w]));
        } else {
            _mm256_maskstore_ps(v + 8 * w, lanes, mem[w]);
            if (what == COUNT_FIRINGS)
                _mm256_maskstore_epi32(c, lanes, _mm256_add_epi32(_mm256_maskload_epi32(c, lanes), count[w]));
        }
    }
}

/* scan's counts and bits with a row's neurons taken 32 (then 8, then 1) at a time over all the
   steps, their membranes held in registers: x read once, nothing else read or written per step
   but the bits (scan: the membrane row, a scratch row and the counts each step; MobileNetV2's
   112x112 layers 0.9 -> 0.35 ns a value) */
__attribute__((target("avx2"))) static void held_scan(int what, const float *x, void *out, float *membrane,
                                                      const float *theta, int64_t steps, int64_t x_stride,
                                                      int64_t rows, int64_t channels, int64_t inner,
                                                      int64_t theta_mode, int reset_to_zero, int64_t first,
                                                      int64_t last) {
    const int64_t m = rows * inner;
    const int per_value = theta_mode == 2;
    for (int64_t r = first; r < last; ++r) {
        const float *th = theta_mode == 1 ? theta + r % channels : theta;
        float *v = membrane + r * inner;
        const float *xr = x + r * inner;
        int64_t j = 0;
        for (; j + 32 <= inner; j += 32)
            held_block(4, 8, what, xr + j, out, v + j, per_value ? th + j : th, per_value, steps, x_stride, m,
                       r * inner + j, reset_to_zero);
        for (; j + 8 <= inner; j += 8)
            held_block(1, 8, what, xr + j, out, v + j, per_value ? th + j : th, per_value, steps, x_stride, m,
                       r * inner + j, reset_to_zero);
        if (j < inner) /* the last 1-7 values, masked */
            held_block(1, (int)(inner - j), what, xr + j, out, v + j, per_value ? th + j : th, per_value, steps,
                       x_stride, m, r * inner + j, reset_to_zero);
    }
}
#endif

static int scan(int what, const float *x, void *out, float *membrane, const float *theta, int64_t steps,
                int64_t x_stride, int64_t rows, int64_t channels, int64_t inner, int64_t theta_mode,
                int reset_to_zero, int64_t first, int64_t last, int vector) {
#ifdef HAVE_AVX2
    if (what != WRITE_SPIKES && vector_loops(vector)) {
        held_scan(what, x, out, membrane, theta, steps, x_stride, rows, channels, inner, theta_mode, reset_to_zero,
                  first, last);
        return 0;
    }
#endif
    float *st = NULL; /* a scratch row where the spikes are not kept */
    uint8_t *flags = NULL;
    if (what != WRITE_SPIKES) {
        st = malloc((size_t)(inner > 0 ? inner : 1) * (sizeof(float) + 1));
        if (st == NULL) return -1; /* no memory: the wrapper raises */
        flags = (uint8_t *)(st + (inner > 0 ? inner : 1));
    }
    const int64_t m = rows * inner;
    for (int64_t r = first; r < last; ++r) {
        const float *th = theta_mode == 1 ? theta + r % channels : theta;
        const int64_t th_step = theta_mode == 2 ? 1 : 0;
        float *v = membrane + r * inner;
        for (int64_t t = 0; t < steps; ++t) {
            const float *xt = x + t * x_stride + r * inner;
            float *s = what == WRITE_SPIKES ? (float *)out + t * m + r * inner : st;
            if (reset_to_zero)
                row_zero(xt, s, v, th, th_step, inner);
            else
                row_subtract(xt, s, v, th, th_step, inner);
            if (what == COUNT_FIRINGS) {
                int32_t *c = (int32_t *)out + r * inner;
                for (int64_t j = 0; j < inner; ++j) c[j] += s[j] != 0.0f;
            } else if (what == PUT_BITS) {
                put_bits((uint8_t *)out, t * m + r * inner, s, flags, inner);
            }
        }
    }
    free(st);
    return 0;
}

void if_scan(const float *x, float *spikes, float *membrane, const float *theta, int64_t steps, int64_t x_stride,
             int64_t rows, int64_t channels, int64_t inner, int64_t theta_mode, int reset_to_zero) {
    scan(WRITE_SPIKES, x, spikes, membrane, theta, steps, x_stride, rows, channels, inner, theta_mode, reset_to_zero,
         0, rows, 0);
}

/* As if_scan, but no spikes written, rows ``first`` to ``last`` - 1 only: counts[r * inner + j]
   += the number of steps the neuron fired (calibration's rates need only those, not the T x N
   spikes; runtime/kernel.py, if_counts). */
int if_counts(const float *x, int32_t *counts, float *membrane, const float *theta, int64_t steps,
              int64_t x_stride, int64_t rows, int64_t channels, int64_t inner, int64_t theta_mode,
              int reset_to_zero, int64_t first, int64_t last, int vector) {
    return scan(COUNT_FIRINGS, x, counts, membrane, theta, steps, x_stride, rows, channels, inner, theta_mode,
                reset_to_zero, first, last, vector);
}

/* An IF layer in onnxruntime's blocked layout (runtime/blocked.py) over `steps` steps, as if_scan
   does it: a step is `rows` rows of `inner` values (H*W positions of `block` channels each, the
   channel innermost); row r holds channels (r % cblocks) * block onwards, so value j of a row has
   threshold theta[(r % cblocks) * block + j % block]. x holds the steps x_stride apart (0: the
   same current every step), spikes rows * inner apart. Same arithmetic as if_scan. */
#ifdef HAVE_AVX2
/* held_blocked's group: W vectors of 8 values of a blocked row (x, spikes: their first step's;
   v: membranes), the first at channel ``first`` of the block of ``block`` thresholds ``th``, over
   all steps, the membranes in registers; if_scan_blocked's arithmetic */
__attribute__((target("avx2"), always_inline)) static inline void held_group(const int W, const float *x, float *s,
                                                                             float *v, const float *th, int64_t first,
                                                                             int64_t block, int64_t steps,
                                                                             int64_t x_stride, int64_t m,
                                                                             int reset_to_zero) {
    __m256 mem[4], theta[4];
    for (int w = 0; w < W; ++w) {
        mem[w] = _mm256_loadu_ps(v + 8 * w);
        theta[w] = _mm256_loadu_ps(th + (first + 8 * w) % block);
    }
    for (int64_t t = 0; t < steps; ++t) {
        const float *xt = x + t * x_stride;
        float *st = s + t * m;
        for (int w = 0; w < W; ++w) {
            _mm256_storeu_ps(st + 8 * w, held_step(&mem[w], _mm256_loadu_ps(xt + 8 * w), theta[w], reset_to_zero));
        }
    }
    for (int w = 0; w < W; ++w) _mm256_storeu_ps(v + 8 * w, mem[w]);
}

/* if_scan_blocked with 32 membranes at a time held in registers over the steps (block a multiple
   of 8: a vector is 8 channels of one position) */
__attribute__((target("avx2"))) static void held_blocked(const float *x, float *spikes, float *membrane,
                                                         const float *theta, int64_t steps, int64_t x_stride,
                                                         int64_t rows, int64_t cblocks, int64_t inner, int64_t block,
                                                         int reset_to_zero) {
    const int64_t m = rows * inner;
    for (int64_t r = 0; r < rows; ++r) {
        const float *th = theta + (r % cblocks) * block;
        const int64_t at = r * inner;
        int64_t p = 0;
        if (32 % block == 0 || block % 32 == 0) /* a group of 32 values within a block, or whole blocks */
            for (; p + 32 <= inner; p += 32)
                held_group(4, x + at + p, spikes + at + p, membrane + at + p, th, p % block, block, steps, x_stride, m,
                           reset_to_zero);
        for (; p < inner; p += 8) /* inner: a multiple of the block, so of 8 */
            held_group(1, x + at + p, spikes + at + p, membrane + at + p, th, p % block, block, steps, x_stride, m,
                       reset_to_zero);
    }
}
#endif

void if_scan_blocked(const float *restrict x, float *restrict spikes, float *restrict membrane,
                     const float *restrict theta, int64_t steps, int64_t x_stride, int64_t rows, int64_t cblocks,
                     int64_t inner, int64_t block, int reset_to_zero, int vector) {
#ifdef HAVE_AVX2
    if (block % 8 == 0 && vector_loops(vector)) {
        held_blocked(x, spikes, membrane, theta, steps, x_stride, rows, cblocks, inner, block, reset_to_zero);
        return;
    }
#endif
    const int64_t m = rows * inner;
    for (int64_t r = 0; r < rows; ++r) {
        const float *th = theta + (r % cblocks) * block;
        float *v = membrane + r * inner;
        for (int64_t t = 0; t < steps; ++t) {
            const float *xt = x + t * x_stride + r * inner;
            float *st = spikes + t * m + r * inner;
            for (int64_t p = 0; p < inner; p += block) {
                const float *xp = xt + p;
                float *sp = st + p, *vp = v + p;
                if (reset_to_zero) {
                    for (int64_t l = 0; l < block; ++l) {
                        const float vj = vp[l] + xp[l];
                        const float fired = (float)(vj >= th[l]);
                        sp[l] = fired * th[l];
                        vp[l] = vj - vj * fired;
                    }
                } else {
                    for (int64_t l = 0; l < block; ++l) {
                        const float vj = vp[l] + xp[l];
                        const float sj = (float)(vj >= th[l]) * th[l];
                        sp[l] = sj;
                        vp[l] = vj - sj;
                    }
                }
            }
        }
    }
}

/* if_scan's spikes as bits (put_bits), without writing them as floats first: a row's step
   into a scratch row, its bits put in place (``bits`` zeroed, T * rows * inner bits), rows
   ``first`` to ``last`` - 1 only */
int if_bits(const float *x, uint8_t *bits, float *membrane, const float *theta, int64_t steps, int64_t x_stride,
            int64_t rows, int64_t channels, int64_t inner, int64_t theta_mode, int reset_to_zero, int64_t first,
            int64_t last, int vector) {
    return scan(PUT_BITS, x, bits, membrane, theta, steps, x_stride, rows, channels, inner, theta_mode, reset_to_zero,
                first, last, vector);
}

/* a byte's eight bits as 0.0 / 1.0, least significant first */
static float bit_values[256][8];

__attribute__((constructor)) static void fill_bit_values(void) {
    for (int b = 0; b < 256; ++b)
        for (int k = 0; k < 8; ++k) bit_values[b][k] = (float)((b >> k) & 1);
}

/* The spikes back: steps x rows x inner values, each 0 or its threshold (theta_mode as in if_scan),
   rows ``first`` to ``last`` - 1 only. Bits become 0/1 a byte at a time from a table, times the
   threshold (1.0 or 0.0 times it: the threshold or 0, as before, in one pass instead of two). */
void unpack_spikes(const uint8_t *restrict bits, float *restrict spikes, const float *restrict theta, int64_t steps,
                   int64_t rows, int64_t channels, int64_t inner, int64_t theta_mode, int64_t first, int64_t last) {
    const float(*table)[8] = bit_values;
    /* row by row, each value written once: the 0/1 of its bit times its threshold (a row's
       first and last values may share a byte with the rows beside it, which are only read) */
    for (int64_t t = 0; t < steps; ++t) {
        for (int64_t r = first; r < last; ++r) {
            const int64_t offset = (t * rows + r) * inner;
            float *row = spikes + offset;
            const float th = theta_mode == 1 ? theta[r % channels] : theta[0];
            int64_t j = 0;
            for (; j < inner && ((offset + j) & 7); ++j) {
                const float fired = (float)((bits[(offset + j) >> 3] >> ((offset + j) & 7)) & 1);
                row[j] = fired * (theta_mode == 2 ? theta[j] : th);
            }
            const uint8_t *b = bits + ((offset + j) >> 3);
            if (theta_mode == 2)
                for (; j + 8 <= inner; j += 8, ++b)
                    for (int k = 0; k < 8; ++k) row[j + k] = table[*b][k] * theta[j + k];
            else
                for (; j + 8 <= inner; j += 8, ++b)
                    for (int k = 0; k < 8; ++k) row[j + k] = table[*b][k] * th;
            for (; j < inner; ++j) {
                const float fired = (float)((bits[(offset + j) >> 3] >> ((offset + j) & 7)) & 1);
                row[j] = fired * (theta_mode == 2 ? theta[j] : th);
            }
        }
    }
}

/* Calibration's histogram of positive activations (calibration/statistics.py, row_counts):
   samples[s] points at sample s's `channels` x `inner` values (the samples of several batches:
   no copy of them into one array); a row is a channel (per_channel) or the
   whole layer; counts[row][bin] += 1 for every v > 0, bin = min(trunc(v * (bins / top_row)),
   bins - 1), in float32 as numpy computes it there. A row at a time over all samples (sample
   by sample, every channel's row of 4,096 counts would be touched in turn: MobileNetV2's 960
   channels' 31 MB out of the caches at every sample); the bins of a block of values first, in
   vector instructions, then counted (2-3x faster than a branch on every value); where the
   processor has AVX2 (and ``vector``), only the positive values' bins are kept to be counted. */
#define HISTOGRAM_BLOCK 1024
#define COPIES_FROM 8 /* a row's values in a call, in bins, from which it is counted in four copies */

/* bins of x[0..size) into idx, v <= 0 to one of four idle slots past the bins (by position:
   a run of zeros is four chains of increments, not one); written to vectorize */
static void bin_indices(const float *restrict x, int64_t size, float scale, int32_t bins, int32_t *restrict idx) {
    for (int64_t j = 0; j < size; ++j) {
        const float v = x[j] > 0.0f ? x[j] * scale : 0.0f;
        const float last = (float)(bins - 1); /* clamped before the conversion: no overflow */
        idx[j] = x[j] > 0.0f ? (int32_t)(v < last ? v : last) : bins + (int32_t)(j & 3);
    }
}

#ifdef HAVE_AVX2
/* packed_bins' lanes to keep for each sign mask of 8 values: the kept lanes' numbers first */
static int32_t keep_lanes[256][8];

__attribute__((constructor)) static void fill_keep_lanes(void) {
    for (int mask = 0; mask < 256; ++mask) {
        int k = 0;
        for (int lane = 0; lane < 8; ++lane)
            if (mask >> lane & 1) keep_lanes[mask][k++] = lane;
        while (k < 8) keep_lanes[mask][k++] = 0;
    }
}

/* The bins of the positive values of x[0..size) only, packed into idx (bin_indices' bins, the
   same float32 arithmetic: min then truncation), their number returned: half of a ReLU's
   values are 0, and counting them into idle slots took half of the histogram's time
   (MobileNetV2's 112x112 layers: 1.0 -> 0.5 ns a value). Eight values at a time: their bins,
   then the lanes of the positive ones moved to the front (one permutation). */
__attribute__((target("avx2,popcnt"))) static int64_t packed_bins(const float *restrict x, int64_t size,
                                                                  float scale, int32_t bins,
                                                                  int32_t *restrict idx) {
    const __m256 zero = _mm256_setzero_ps(), by = _mm256_set1_ps(scale), last = _mm256_set1_ps((float)(bins - 1));
    int64_t k = 0, j = 0;
    for (; j + 8 <= size; j += 8) {
        const __m256 v = _mm256_loadu_ps(x + j);
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ)); /* NaN: not kept */
        const __m256i b = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_mul_ps(v, by), last));
        const __m256i lanes = _mm256_loadu_si256((const __m256i *)keep_lanes[mask]);
        _mm256_storeu_si256((__m256i *)(idx + k), _mm256_permutevar8x32_epi32(b, lanes));
        k += __builtin_popcount((unsigned)mask);
    }
    for (; j < size; ++j)
        if (x[j] > 0.0f) {
            const float f = x[j] * scale;
            idx[k++] = (int32_t)(f < (float)(bins - 1) ? f : (float)(bins - 1));
        }
    return k;
}

/* The largest of x[0 .. size) rounded down to whole vectors of 32 values, folded into *m
   (v > m ? v : m, lane by lane, so a maximum of 0 may keep either sign of zero, as numpy's may);
   *nan set where one is NaN. Returns how many values it read. */
__attribute__((target("avx2"))) static int64_t row_peak(const float *restrict x, int64_t size, float *m, int *nan) {
    if (size < 32) return 0;
    __m256 m0 = _mm256_set1_ps(*m), m1 = m0, m2 = m0, m3 = m0, bad = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= size; j += 32) {
        const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + 8);
        const __m256 c = _mm256_loadu_ps(x + j + 16), d = _mm256_loadu_ps(x + j + 24);
        m0 = _mm256_max_ps(a, m0); /* a > m0 ? a : m0 */
        m1 = _mm256_max_ps(b, m1);
        m2 = _mm256_max_ps(c, m2);
        m3 = _mm256_max_ps(d, m3);
        bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q), _mm256_cmp_ps(c, d, _CMP_UNORD_Q)));
    }
    const __m256 all = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    float lanes[8];
    _mm256_storeu_ps(lanes, all);
    for (int k = 0; k < 8; ++k) *m = lanes[k] > *m ? lanes[k] : *m;
    *nan |= _mm256_movemask_ps(bad) != 0;
    return j;
}
#endif

/* counts are int64, or uint32 where ``wide`` is 0 (the caller knows they cannot overflow:
   calibration/statistics.py, RunningCounts) */
static inline void add_count(void *counts, int wide, int64_t i, int64_t value) {
    if (wide)
        ((int64_t *)counts)[i] += value;
    else
        ((uint32_t *)counts)[i] += (uint32_t)value;
}

static inline int64_t count_at(const void *counts, int wide, int64_t i) {
    return wide ? ((const int64_t *)counts)[i] : (int64_t)((const uint32_t *)counts)[i];
}

static inline void set_count(void *counts, int wide, int64_t i, int64_t value) {
    if (wide)
        ((int64_t *)counts)[i] = value;
    else
        ((uint32_t *)counts)[i] = (uint32_t)value;
}

/* One row's positive values over the n samples (samples[s] + offset, size values each) counted
   into counts[h .. h + bins) on [0, top); acc: the scratch copies (4 x (bins + 4)) */
static void count_row(const float *const *samples, int64_t n, int64_t offset, int64_t size, float top, void *counts,
                      int wide, int64_t h, int64_t bins, uint32_t *acc, int packed) {
    const float scale = top > 0.0f ? (float)bins / top : 0.0f;
    int32_t idx[HISTOGRAM_BLOCK];
    if (n * size < bins) { /* a few values, a few at a time (dense layers: one a sample): no
                              block of bins first, straight into the row */
        for (int64_t s = 0; s < n; ++s) {
            const float *v = samples[s] + offset;
            for (int64_t j = 0; j < size; ++j) {
                if (v[j] > 0.0f) {
                    const float f = v[j] * scale;
                    add_count(counts, wide, h + (f < (float)(bins - 1) ? (int64_t)f : bins - 1), 1);
                }
            }
        }
        return;
    }
    /* up to four 32-bit copies of the row and its idle slots, a value's copy by its position: a
       run of values in one bin (most values are small, a few bins near 0 take them) is four
       chains of increments, not one (kernel.py gives a call at most 2^31 values: no copy
       overflows); one copy where a row has few values in this call: clearing and adding up four
       copies cost more than their values (MobileNetV2's 7x7 layers: 4,200 values a row a call) */
    const int64_t stride = bins + 4;
    const int copies = n * size >= COPIES_FROM * bins ? 4 : 1;
    memset(acc, 0, (size_t)(copies * stride) * sizeof(uint32_t));
    for (int64_t s = 0; s < n; ++s) {
        const float *v = samples[s] + offset;
        for (int64_t start = 0; start < size; start += HISTOGRAM_BLOCK) {
            const int64_t m = size - start < HISTOGRAM_BLOCK ? size - start : HISTOGRAM_BLOCK;
            int64_t kept = m;
#ifdef HAVE_AVX2
            if (packed)
                kept = packed_bins(v + start, m, scale, (int32_t)bins, idx);
            else
#endif
                bin_indices(v + start, m, scale, (int32_t)bins, idx);
            /* the next block asked for while this one is counted: the hardware's prefetch
               stops at every 4 kB page and at every jump to the next sample (a large
               layer's batch, read from memory: 2.1 -> 0.9 ns a value) */
            const float *next = start + HISTOGRAM_BLOCK < size ? v + start + HISTOGRAM_BLOCK
                                : s + 1 < n ? samples[s + 1] + offset : NULL;
            const int64_t ahead = start + HISTOGRAM_BLOCK < size ? size - start - HISTOGRAM_BLOCK : size;
            for (int64_t p = 0; next != NULL && p < ahead && p < HISTOGRAM_BLOCK; p += 16)
                __builtin_prefetch(next + p);
            int64_t j = 0;
            if (copies == 4)
                for (; j + 4 <= kept; j += 4) {
                    acc[idx[j]] += 1;
                    acc[stride + idx[j + 1]] += 1;
                    acc[2 * stride + idx[j + 2]] += 1;
                    acc[3 * stride + idx[j + 3]] += 1;
                }
            for (; j < kept; ++j) acc[idx[j]] += 1;
        }
    }
    if (copies == 4)
        for (int64_t b = 0; b < bins; ++b)
            add_count(counts, wide, h + b,
                      (int64_t)acc[b] + acc[stride + b] + acc[2 * stride + b] + acc[3 * stride + b]);
    else
        for (int64_t b = 0; b < bins; ++b) add_count(counts, wide, h + b, acc[b]);
}

int histogram(const float *const *samples, int64_t n, int64_t channels, int64_t inner, int per_channel,
              const float *restrict tops, void *counts, int wide, int64_t bins, int vector) {
    if (bins < 1) return -2; /* the wrapper raises */
    const int64_t rows = per_channel ? channels : 1;
    const int64_t size = per_channel ? inner : channels * inner; /* a row's values in one sample */
    const int packed = vector_loops(vector);
    uint32_t *acc = malloc((size_t)(4 * (bins + 4)) * sizeof(uint32_t));
    if (acc == NULL) return -1; /* no memory: the wrapper raises */
    for (int64_t row = 0; row < rows; ++row)
        count_row(samples, n, per_channel ? row * inner : 0, size, tops[row], counts, wide, row * bins, bins, acc,
                  packed);
    free(acc);
    return 0;
}

/* 2^e of a power-of-two float (its exponent field: tops are normal floats) */
static int power_exponent(float top) {
    uint32_t bits;
    memcpy(&bits, &top, 4);
    return (int)((bits >> 23) & 0xff) - 127;
}

/* calibration/statistics.py's power_tops for one maximum: the power of two strictly above it,
   its exponent within [emin, emax] (numpy's frexp: m = f 2^e, f in [0.5, 1); e is 0 for inf),
   0 where the maximum is not positive (NaN included) */
static float power_top(float m, int emin, int emax) {
    if (!(m > 0.0f)) return 0.0f;
    uint32_t bits;
    memcpy(&bits, &m, 4);
    int field = (int)((bits >> 23) & 0xff), e;
    if (field == 255)
        e = 0; /* inf */
    else if (field == 0) { /* subnormal: its highest set bit */
        uint32_t mantissa = bits & 0x7fffff;
        e = -126;
        while (!(mantissa & 0x800000)) {
            mantissa <<= 1;
            --e;
        }
        e += 1; /* m = 1.f 2^e: frexp's exponent is e + 1 */
    } else
        e = field - 126;
    e = e < emin ? emin : e > emax ? emax : e;
    const uint32_t top = (uint32_t)(e + 127) << 23; /* emin >= -126: a normal float */
    float out;
    memcpy(&out, &top, 4);
    return out;
}

/* The running histograms' step for a batch, or a group of batches that waited, counted at once
   (calibration/statistics.py, RunningCounts.take): per row, the batch's maximum (NaN where it holds one), the running
   maximum with it (np.maximum), its power-of-two range (power_tops), the row's counts so far
   merged onto that range where it grew (rebin: 2^k neighbouring bins make one), then the batch
   counted on it. The maximum first and the counts right after, a row at a time, so that a
   row's values are read from memory once (the counting reads them from the cache): the maximum
   came from a numpy pass of its own over the whole batch before. ``running`` (in: the maxima
   before, or NULL for none; out: with the batch), ``tops`` (in: the counts' ranges so far, 0
   where none; out: the new ones), ``batch`` (out: the batch's own maxima). */
int histogram_running(const float *const *samples, int64_t n, int64_t channels, int64_t inner, int per_channel,
                      float *restrict running, int has_running, float *restrict tops, float *restrict batch,
                      void *counts, int wide, int64_t bins, int vector, int emin, int emax) {
    if (bins < 1 || (bins & (bins - 1)) || emin < -126 || emax > 127) return -2;
    const int64_t rows = per_channel ? channels : 1;
    const int64_t size = per_channel ? inner : channels * inner;
    const int packed = vector_loops(vector);
    uint32_t *acc = malloc((size_t)(4 * (bins + 4)) * sizeof(uint32_t));
    if (acc == NULL) return -1;
    for (int64_t row = 0; row < rows; ++row) {
        const int64_t offset = per_channel ? row * inner : 0;
        float m = -INFINITY;
        int nan = 0;
        for (int64_t s = 0; s < n; ++s) {
            const float *v = samples[s] + offset;
            int64_t j = 0;
#ifdef HAVE_AVX2
            if (packed) j = row_peak(v, size, &m, &nan);
#endif
            for (; j < size; ++j) {
                m = v[j] > m ? v[j] : m;
                nan |= v[j] != v[j];
            }
        }
        batch[row] = nan ? NAN : m;
        const float before = has_running ? running[row] : batch[row];
        const float now = before != before || batch[row] != batch[row] ? NAN : before > batch[row] ? before : batch[row];
        running[row] = now;
        const float top = power_top(now, emin, emax), old = tops[row];
        const int64_t h = row * bins;
        if (old > 0.0f && top > old) { /* the counts so far onto the grown range */
            const int shift = power_exponent(top) - power_exponent(old);
            const int64_t width = shift >= 62 || ((int64_t)1 << shift) >= bins ? bins : (int64_t)1 << shift;
            for (int64_t b = 0; b < bins; ++b) { /* bin b: bins b * width onwards, read before b is written */
                int64_t sum = 0; /* past bins / width: none */
                if (b < bins / width)
                    for (int64_t k = 0; k < width; ++k) sum += count_at(counts, wide, h + b * width + k);
                set_count(counts, wide, h + b, sum);
            }
        }
        tops[row] = top;
        count_row(samples, n, offset, size, top, counts, wide, h, bins, acc, packed);
    }
    free(acc);
    return 0;
}

/* MMSE thresholds (calibration/mmse.py, whose _rows defines them): per row of histogram
   counts, the candidate threshold of least T-step quantization error. Each value is computed
   as numpy computes it there, operation by operation and in the same order (the build turns
   off contraction into fused multiply-adds), so that the thresholds are the same bit for bit:
   the bins' running sums, the first bin of every level found from a guess and two steps back
   or ahead, a level's sums differenced at its edges, and a candidate's error summed over the
   levels in numpy's pairwise order. */
static double pairwise_sum(const double *a, int64_t n) {
    if (n < 8) {
        double res = 0.0;
        for (int64_t i = 0; i < n; ++i) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; ++j) r[j] = a[j];
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; ++j) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) res += a[i];
        return res;
    }
    int64_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

/* floor and ceil without a library call (x86-64's baseline has no rounding instruction): the
   same values, but for the sign of a zero, which only meets comparisons here */
static inline double floor_inline(double x) {
    if (!(fabs(x) < 4503599627370496.0)) return x; /* 2^52 and above, inf, nan: integral already */
    const double t = (double)(int64_t)x;
    return t > x ? t - 1.0 : t;
}

static inline double ceil_inline(double x) {
    if (!(fabs(x) < 4503599627370496.0)) return x;
    const double t = (double)(int64_t)x;
    return t < x ? t + 1.0 : t;
}

int mmse(const void *counts, int wide, int64_t rows, int64_t bins, const float *restrict tops,
         const float *restrict grids, const float *restrict factors, int64_t candidates, int64_t steps,
         double v_init, double *restrict best) {
    if (bins < 1 || steps < 1 || candidates < 1) return -2;
    /* the running sums s0, s1, s2 [bins + 1], the bins' centres times T [bins]; a candidate's
       edges [steps + 2] and errors [steps + 1] */
    double *work = malloc((size_t)(4 * (bins + 1) + (steps + 1)) * sizeof(double));
    int64_t *edges = malloc((size_t)(steps + 2) * sizeof(int64_t));
    if (work == NULL || edges == NULL) {
        free(work);
        free(edges);
        return -1;
    }
    double *s0 = work, *s1 = s0 + bins + 1, *s2 = s1 + bins + 1, *scaled = s2 + bins + 1;
    double *terms = scaled + bins + 1;
    const double t = (double)steps;
    for (int64_t row = 0; row < rows; ++row) {
        const float top32 = tops[row];
        if (!((double)top32 > 0.0)) {
            best[row] = 0.0;
            continue;
        }
        const float width32 = grids[row] / (float)bins;
        const double width = (double)width32;
        const double safe = width > 0.0 ? width : 1.0;
        s0[0] = s1[0] = s2[0] = 0.0;
        for (int64_t b = 0; b < bins; ++b) {
            const double w = (double)count_at(counts, wide, row * bins + b), center = ((double)b + 0.5) * width;
            const double wa = w * center;
            s0[b + 1] = s0[b] + w; /* 0 + x is x: numpy's cumsum, which starts at x */
            s1[b + 1] = s1[b] + wa;
            s2[b + 1] = s2[b] + wa * center;
            scaled[b] = center * t;
        }
        double least = 0.0, chosen = 0.0;
        for (int64_t i = 0; i < candidates; ++i) {
            const double theta = (double)(float)(top32 * factors[i]);
#define LEVEL(b) floor_inline(scaled[b] / theta + v_init)
            edges[0] = 0;
            edges[steps + 1] = bins;
            for (int64_t k = 1; k <= steps; ++k) {
                const double level = (double)k;
                const double guess = ceil_inline((level - v_init) * theta / t / safe - 0.5);
                int64_t first = guess > 0.0 ? (guess > (double)bins ? bins : (int64_t)guess) : 0; /* NaN: 0 */
                for (int pass = 0; pass < 2; ++pass) {
                    const int64_t was = first, below = first - 1;
                    if (below >= 0 && LEVEL(below) >= level) first = below;
                    if (first < bins && LEVEL(first) < level) first += 1;
                    if (first == was) break; /* a second pass from the same bin moves it no more */
                }
                edges[k] = first > edges[k - 1] ? first : edges[k - 1]; /* first >= 0 = edges[0] */
            }
#undef LEVEL
            for (int64_t k = 0; k <= steps; ++k) {
                const int64_t lo = edges[k], hi = edges[k + 1];
                const double q = theta / t * (double)k;
                const double w = s0[hi] - s0[lo], wa = s1[hi] - s1[lo], wa2 = s2[hi] - s2[lo];
                terms[k] = wa2 - 2.0 * q * wa + q * q * w;
            }
            const double error = pairwise_sum(terms, steps + 1);
            if (i == 0 || error < least || (isnan(error) && !isnan(least))) {
                least = error;
                chosen = theta;
            }
        }
        best[row] = chosen;
    }
    free(work);
    free(edges);
    return 0;
}
