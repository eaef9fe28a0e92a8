/* bare_text_main.c - the smallest application around the text encoder, for measuring flash and
 * RAM: one encoding of a volatile sentence into a real embedding. Part of edgebert (Apache-2.0). */
#include <stdint.h>
#include "edgebert_model.h"

volatile int32_t eb_input[EB_TEXT_MAX_LEN];
volatile float eb_sink;

int main(void) {
    int32_t ids[EB_TEXT_MAX_LEN], out[EB_TEXT_OUT];
    float e[EB_TEXT_OUT];
    int i;
    for (i = 0; i < EB_TEXT_MAX_LEN; ++i) {
        ids[i] = eb_input[i];
    }
    if (eb_text_run(ids, EB_TEXT_MAX_LEN, out) == 0) {
        eb_text_embedding(out, EB_TEXT_MAX_LEN, e);
        eb_sink = e[0];
    }
    return 0;
}
