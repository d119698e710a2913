/* The IF neuron over T steps in one pass (onnx2snn/runtime/kernel.py loads it with ctypes).

   A step's neurons are `rows` rows of `inner` values ([N, C, H, W] is N*C rows of H*W);
   x and spikes hold `steps` such steps one after the other (x_stride apart for x: 0 when the
   same current drives every step); membrane holds one step's worth, the starting membranes in,
   the last ones out. theta: one value (theta_mode 0), one per channel = per row modulo
   `channels` (mode 1), or one per value of a row (mode 2: [N, F] layers, a row per sample).
   A row of membranes stays in the cache over the steps, so x is read once and spikes written
   once. The arithmetic is the artifact's, in the same order (bit-identical outputs):
       v = membrane + x;  fired = v >= theta;  spikes = fired * theta;
       membrane_next = v - spikes            (reset by subtraction)
                     | v - v * fired          (reset to zero)
   One thread: on a loaded machine a second thread that the scheduler parks makes a shared loop
   wait for it (two OpenMP threads took 19 ms a step for 1.6 M neurons, one took 2.3 ms).
   Built with -fno-trapping-math so that the comparison vectorizes; it changes no value. */
#include <stdint.h>

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

void if_scan(const float *x, float *spikes, float *membrane, const float *theta, int64_t steps, int64_t x_stride,
             int64_t rows, int64_t channels, int64_t inner, int64_t theta_mode, int reset_to_zero) {
    const int64_t m = rows * inner;
    for (int64_t r = 0; r < rows; ++r) {
        const float *th = theta_mode == 1 ? theta + r % channels : theta;
        const int64_t th_step = theta_mode == 2 ? 1 : 0;
        float *v = membrane + r * inner;
        for (int64_t t = 0; t < steps; ++t) {
            const float *xt = x + t * x_stride + r * inner;
            float *st = spikes + t * m + r * inner;
            if (reset_to_zero)
                row_zero(xt, st, v, th, th_step, inner);
            else
                row_subtract(xt, st, v, th, th_step, inner);
        }
    }
}
