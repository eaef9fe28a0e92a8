/* text_main.c - the edgebert text firmware's test application: encodes the sentences of
 * eb_test_data.c and prints the int32 outputs over semihosting, with SysTick counts per sentence
 * (deterministic under QEMU -icount) and the stack high-water mark. Part of edgebert (Apache-2.0). */
#include <stdint.h>
#include <stdio.h>
#include "edgebert_model.h"

extern const int32_t eb_test_ids[];
extern const int eb_test_lens[];
extern const int eb_test_n;

#include "eb_measure.h"

int main(void) {
    static int32_t out[EB_TEXT_OUT];
    const int32_t *ids = eb_test_ids;
    uint32_t *top;
    int i, k, rc;
    printf("calibrate %lu %lu\n", (unsigned long)calibrate(1000000u), 2000000ul);
    for (i = 0; i < eb_test_n; ++i) {
        uint32_t t;
        ticks_start();
        rc = eb_text_run(ids, eb_test_lens[i], out);
        t = ticks_elapsed();
        printf("o %d %d %lu |", rc, eb_test_lens[i], (unsigned long)t);
        for (k = 0; k < EB_TEXT_OUT; ++k) printf(" %ld", (long)out[k]);
        printf("\n");
        ids += eb_test_lens[i];
    }
    top = paint_base();
    paint(top);
    rc = eb_text_run(eb_test_ids, eb_test_lens[0], out);
    printf("infer_stack %lu\n", (unsigned long)painted_depth(top));
    printf("done %d\n", rc);
    return 0;
}
