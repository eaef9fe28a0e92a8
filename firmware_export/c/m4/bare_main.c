/* bare_main.c - the smallest application around the model, for measuring flash and RAM: one
 * inference (EB_LEARN: and one learning step of the head) on a volatile input. Part of edgebert. */
#include <stdint.h>
#include "edgebert_model.h"

void eb_learner_init(float lr, int normalize);
float eb_learner_learn(const float *x, int label);

volatile float eb_input[EB_MODEL_INPUTS];
volatile int8_t eb_sink;

int main(void) {
    float x[EB_MODEL_INPUTS];
    int8_t features[EB_MODEL_FEATURES], output[EB_MODEL_OUTPUTS];
    int i;
    for (i = 0; i < EB_MODEL_INPUTS; ++i) {
        x[i] = eb_input[i];
    }
    eb_model_run(x, features, output);
    eb_sink = output[0];
#ifdef EB_LEARN
    eb_learner_init(0.01f, 1);
    eb_sink = (int8_t)eb_learner_learn(x, 0);
#endif
    return 0;
}
