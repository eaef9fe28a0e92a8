/* eb_api.c - the firmware's entry points: inference and on-device learning of the head (C99).
 *
 * One static head (eb_head.h) over the int8 network's features (edgebert_model.c). The host build
 * of these files is a shared library the device runtime calls; the Cortex-M4 build links them
 * into the application. Part of edgebert (Apache-2.0).
 */
#include "edgebert_model.h"

#define EB_HEAD_IN EB_MODEL_FEATURES
#ifndef EB_HEAD_OUT
#define EB_HEAD_OUT EB_MODEL_OUTPUTS
#endif
#include "eb_head.h"

static EbHead eb_head;

/* Inference: int8 features and outputs of one float input. */
void eb_infer(const float *x, int8_t *features, int8_t *output) {
    eb_model_run(x, features, output);
}

void eb_learner_init(float lr, int normalize) {
    eb_head_init(&eb_head, lr, normalize);
}

/* The head's class for one input (features computed by the int8 network). */
int eb_learner_predict(const float *x) {
    int8_t q[EB_MODEL_FEATURES], out[EB_MODEL_OUTPUTS];
    float f[EB_MODEL_FEATURES];
    eb_model_run(x, q, out);
    eb_model_features(q, f);
    return eb_head_predict(&eb_head, f);
}

/* One learning step on one input and its label; the loss before the step, -1 if refused. */
float eb_learner_learn(const float *x, int label) {
    int8_t q[EB_MODEL_FEATURES], out[EB_MODEL_OUTPUTS];
    float f[EB_MODEL_FEATURES];
    eb_model_run(x, q, out);
    eb_model_features(q, f);
    return eb_head_learn(&eb_head, f, label);
}

/* The same two on features already computed (tests and hosts that hold features). */
int eb_head_predict_features(const float *f) {
    return eb_head_predict(&eb_head, f);
}

float eb_head_learn_features(const float *f, int label) {
    return eb_head_learn(&eb_head, f, label);
}

/* The head's weights (in, out) and biases, copied out. */
void eb_head_weights(float *w, float *b) {
    int i, j;
    for (i = 0; i < EB_HEAD_IN; ++i) {
        for (j = 0; j < EB_HEAD_OUT; ++j) {
            w[i * EB_HEAD_OUT + j] = eb_head.w[i][j];
        }
    }
    for (j = 0; j < EB_HEAD_OUT; ++j) {
        b[j] = eb_head.b[j];
    }
}

/* inputs, features, outputs: what a host checks against firmware.json before passing buffers */
void eb_model_dims(int *dims) {
    dims[0] = EB_MODEL_INPUTS;
    dims[1] = EB_MODEL_FEATURES;
    dims[2] = EB_MODEL_OUTPUTS;
}

unsigned eb_head_state_bytes(void) {
    return (unsigned)sizeof(EbHead);
}
