/* eb_head.h - on-device learning of a float classifier head (TinyOL), C99, header-only.
 *
 * The last layer learns online on the features of the frozen int8 network: one SGD step per
 * labelled sample on the softmax cross-entropy, with the features standardized online by an
 * exponential running mean and variance (time constant ~100 samples, warm-started) and a variance
 * floor of 1% of the mean variance, refreshed every 16 samples. Step for step this is what
 * edgebert's OnlineLearner(features, classes, hidden=(), loss="xent", optimizer="sgd") does in
 * numpy, in the same float32 operations and the same order, so both agree to float rounding.
 * Sizes come from EB_HEAD_IN and EB_HEAD_OUT; the state is one struct, no malloc.
 * Part of edgebert (Apache-2.0).
 */
#ifndef EB_HEAD_H
#define EB_HEAD_H

#include <math.h>
#include <stdint.h>

#ifndef EB_HEAD_IN
#error "define EB_HEAD_IN (features) and EB_HEAD_OUT (classes) before including eb_head.h"
#endif

#define EB_HEAD_BETA 0.99
#define EB_HEAD_FLOOR 1e-2
#define EB_HEAD_TINY 1e-30f

typedef struct {
    float w[EB_HEAD_IN][EB_HEAD_OUT]; /* (in, out): logits = x @ w + b */
    float b[EB_HEAD_OUT];
    float mean[EB_HEAD_IN];
    float var[EB_HEAD_IN];
    float scale[EB_HEAD_IN];
    float floor;
    float lr;
    uint32_t t;      /* samples folded into mean/var */
    uint32_t steps;  /* learning steps taken */
    uint8_t normalize, scale_valid, floor_set;
} EbHead;

static inline void eb_head_init(EbHead *h, float lr, int normalize) {
    int i, j;
    for (i = 0; i < EB_HEAD_IN; ++i) {
        for (j = 0; j < EB_HEAD_OUT; ++j) {
            h->w[i][j] = 0.0f; /* a new head starts neutral */
        }
        h->mean[i] = 0.0f;
        h->var[i] = 1.0f;
        h->scale[i] = 1.0f;
    }
    for (j = 0; j < EB_HEAD_OUT; ++j) {
        h->b[j] = 0.0f;
    }
    h->floor = 0.0f;
    h->lr = lr;
    h->t = h->steps = 0;
    h->normalize = (uint8_t)(normalize != 0);
    h->scale_valid = h->floor_set = 0;
}

/* numpy's float32 sum of up to 128 values: eight interleaved partial sums, combined pairwise. */
static inline float eb_sum8(const float *a, int n) {
    float r[8], res = 0.0f;
    int i, j;
    const int blocks = n - n % 8;
    if (n < 8) {
        for (i = 0; i < n; ++i) {
            res += a[i];
        }
        return res;
    }
    for (j = 0; j < 8; ++j) {
        r[j] = a[j];
    }
    for (i = 8; i < blocks; i += 8) {
        for (j = 0; j < 8; ++j) {
            r[j] += a[i + j];
        }
    }
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (i = blocks; i < n; ++i) {
        res += a[i];
    }
    return res;
}

/* Fold an unlabelled sample into the running mean and variance. */
static inline void eb_head_observe(EbHead *h, const float *x) {
    double rate_d;
    float rate;
    int i;
    if (!h->normalize) {
        return;
    }
    h->t += 1;
    rate_d = 1.0 - EB_HEAD_BETA;
    if (1.0 / (double)h->t > rate_d) {
        rate_d = 1.0 / (double)h->t;
    }
    rate = (float)rate_d;
    for (i = 0; i < EB_HEAD_IN; ++i) {
        float d;
        h->mean[i] += rate * (x[i] - h->mean[i]);
        d = x[i] - h->mean[i];
        d *= d;
        d -= h->var[i];
        d *= rate;
        h->var[i] += d;
    }
    h->scale_valid = 0;
}

static inline void eb_head_scale(EbHead *h) {
    int i;
    if (h->scale_valid) {
        return;
    }
    if (!h->floor_set || h->t % 16 == 0) { /* the floor moves slowly: refreshed now and then */
        const float mean_var = eb_sum8(h->var, EB_HEAD_IN) / (float)EB_HEAD_IN;
        h->floor = (float)(EB_HEAD_FLOOR * (double)mean_var + 1e-12);
        h->floor_set = 1;
    }
    for (i = 0; i < EB_HEAD_IN; ++i) {
        h->scale[i] = sqrtf(h->var[i] + h->floor);
    }
    h->scale_valid = 1;
}

/* Logits for features x; ``xs`` receives the standardized features (the step needs them). */
static inline void eb_head_logits(EbHead *h, const float *x, float *xs, float *logits) {
    int i, j;
    if (h->normalize) {
        eb_head_scale(h);
    }
    for (i = 0; i < EB_HEAD_IN; ++i) {
        xs[i] = h->normalize ? (x[i] - h->mean[i]) / h->scale[i] : x[i];
    }
    for (j = 0; j < EB_HEAD_OUT; ++j) {
        float acc = 0.0f;
        for (i = 0; i < EB_HEAD_IN; ++i) {
            acc += xs[i] * h->w[i][j];
        }
        logits[j] = acc + h->b[j];
    }
}

/* The predicted class of features x. */
static inline int eb_head_predict(EbHead *h, const float *x) {
    float xs[EB_HEAD_IN], logits[EB_HEAD_OUT];
    int j, best = 0;
    eb_head_logits(h, x, xs, logits);
    for (j = 1; j < EB_HEAD_OUT; ++j) {
        if (logits[j] > logits[best]) {
            best = j;
        }
    }
    return best;
}

static inline void eb_head_flush(float *a, int n) {
    int i;
    for (i = 0; i < n; ++i) {
        if (fabsf(a[i]) < EB_HEAD_TINY) {
            a[i] = 0.0f; /* no float32 denormals: they are slow on most FPUs */
        }
    }
}

/* One SGD step on (x, label); returns the sample's cross-entropy before the step, or -1 when the
 * label is out of range or the gradient is not finite (then nothing changes but the statistics). */
static inline float eb_head_learn(EbHead *h, const float *x, int label) {
    float xs[EB_HEAD_IN], z[EB_HEAD_OUT], delta[EB_HEAD_OUT], zmax, total, loss;
    int i, j;
    if (label < 0 || label >= EB_HEAD_OUT) {
        return -1.0f;
    }
    eb_head_observe(h, x);
    eb_head_logits(h, x, xs, z);
    zmax = z[0];
    for (j = 1; j < EB_HEAD_OUT; ++j) {
        zmax = z[j] > zmax ? z[j] : zmax;
    }
    for (j = 0; j < EB_HEAD_OUT; ++j) {
        z[j] -= zmax;
        z[j] = z[j] < -80.0f ? -80.0f : z[j];
        delta[j] = expf(z[j]);
    }
    total = eb_sum8(delta, EB_HEAD_OUT);
    loss = logf(total) - z[label];
    for (j = 0; j < EB_HEAD_OUT; ++j) {
        delta[j] = delta[j] / total;
    }
    delta[label] -= 1.0f;
    for (j = 0; j < EB_HEAD_OUT; ++j) {
        if (!isfinite(delta[j])) {
            return -1.0f;
        }
    }
    for (i = 0; i < EB_HEAD_IN; ++i) {
        if (!isfinite(xs[i])) {
            return -1.0f;
        }
        for (j = 0; j < EB_HEAD_OUT; ++j) {
            h->w[i][j] -= h->lr * (xs[i] * delta[j]);
        }
    }
    for (j = 0; j < EB_HEAD_OUT; ++j) {
        h->b[j] -= h->lr * delta[j];
    }
    h->steps += 1;
    if (h->steps % 64 == 0) {
        eb_head_flush(&h->w[0][0], EB_HEAD_IN * EB_HEAD_OUT);
        eb_head_flush(h->b, EB_HEAD_OUT);
        eb_head_flush(h->mean, EB_HEAD_IN);
        eb_head_flush(h->var, EB_HEAD_IN);
    }
    return loss;
}

#endif /* EB_HEAD_H */
