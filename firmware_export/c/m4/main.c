/* main.c - the edgebert firmware test application: runs the model (and the head learner) on the
 * inputs of eb_test_data.c and prints the results over semihosting; counts instructions with
 * SysTick, which QEMU's -icount mode makes deterministic. Part of edgebert (Apache-2.0). */
#include <stdint.h>
#include <stdio.h>
#include "edgebert_model.h"

extern const float eb_test_x[];
extern const int eb_test_n;
extern const int eb_test_y[];
extern const int eb_test_learn;
extern const float eb_test_lr;
extern const int eb_test_normalize;
void eb_infer(const float *x, int8_t *features, int8_t *output);
void eb_learner_init(float lr, int normalize);
float eb_head_learn_features(const float *f, int label);
int eb_head_predict_features(const float *f);
void eb_head_weights(float *w, float *b);
unsigned eb_head_state_bytes(void);
void eb_model_features(const int8_t *q, float *out);

#include "eb_measure.h"

int main(void) {
    static int8_t q[EB_MODEL_FEATURES], out[EB_MODEL_OUTPUTS];
    static float f[EB_MODEL_FEATURES], w[EB_MODEL_FEATURES * EB_MODEL_OUTPUTS], b[EB_MODEL_OUTPUTS];
    uint32_t t_infer, t_learn = 0, *top;
    int i, k;
    printf("calibrate %lu %lu\n", (unsigned long)calibrate(100000u), 200000ul);
    ticks_start();
    for (i = 0; i < eb_test_n; ++i) {
        eb_infer(eb_test_x + (long)i * EB_MODEL_INPUTS, q, out);
    }
    t_infer = ticks_elapsed();
    printf("infer_ticks %lu %d\n", (unsigned long)t_infer, eb_test_n);
    top = paint_base();
    paint(top);
    eb_infer(eb_test_x, q, out);
    printf("infer_stack %lu\n", (unsigned long)painted_depth(top));
    for (i = 0; i < eb_test_n; ++i) {
        eb_infer(eb_test_x + (long)i * EB_MODEL_INPUTS, q, out);
        printf("o");
        for (k = 0; k < EB_MODEL_FEATURES; ++k) printf(" %d", q[k]);
        printf(" |");
        for (k = 0; k < EB_MODEL_OUTPUTS; ++k) printf(" %d", out[k]);
        printf("\n");
    }
    if (eb_test_learn) {
        eb_learner_init(eb_test_lr, eb_test_normalize);
        for (i = 0; i < eb_test_n; ++i) {
            eb_infer(eb_test_x + (long)i * EB_MODEL_INPUTS, q, out);
            eb_model_features(q, f);
            (void)eb_head_predict_features(f); /* as a device does: predict, then learn when the label comes */
            ticks_start();
            eb_head_learn_features(f, eb_test_y[i]);
            t_learn += ticks_elapsed();
        }
        printf("learn_ticks %lu %d\n", (unsigned long)t_learn, eb_test_n);
        eb_head_weights(w, b);
        printf("w");
        for (k = 0; k < EB_MODEL_FEATURES * EB_MODEL_OUTPUTS; ++k) printf(" %.9e", (double)w[k]);
        printf("\nb");
        for (k = 0; k < EB_MODEL_OUTPUTS; ++k) printf(" %.9e", (double)b[k]);
        printf("\nhead_state_bytes %u\n", eb_head_state_bytes());
        top = paint_base(); /* after the weights are printed: this step changes them */
        paint(top);
        eb_head_learn_features(f, eb_test_y[0]);
        printf("learn_stack %lu\n", (unsigned long)painted_depth(top));
    }
    printf("done\n");
    return 0;
}
