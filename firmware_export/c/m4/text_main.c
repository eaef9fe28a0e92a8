/* text_main.c - the edgebert text firmware's test application: encodes the sentences of
 * eb_test_data.c and prints the int32 outputs over semihosting, with SysTick counts per sentence
 * (deterministic under QEMU -icount) and the stack high-water mark. Part of edgebert (Apache-2.0). */
#include <stdint.h>
#include <stdio.h>
#include "edgebert_model.h"

extern const int32_t eb_test_ids[];
extern const int eb_test_lens[];
extern const int eb_test_n;

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define EB_PAINT_WORDS 2048u
#define EB_PAINT 0xA5C3E1F0u

/* SysTick counts 24 bits down at 1/40 of the instruction rate under QEMU -icount shift=0: one
 * sentence (tens of millions of instructions) stays far below a wrap */
static void ticks_start(void) {
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u; /* enable, processor clock, no interrupt */
}

static uint64_t ticks_elapsed(void) {
    return 0x00FFFFFFu - (SYST_CVR & 0x00FFFFFFu);
}

static uint32_t *paint_base(void) {
    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return (uint32_t *)(sp - 64u);
}

static void paint(uint32_t *top) {
    uint32_t i;
    for (i = 1; i <= EB_PAINT_WORDS; ++i) {
        top[-(int32_t)i] = EB_PAINT;
    }
}

static uint32_t painted_depth(const uint32_t *top) {
    uint32_t i;
    for (i = EB_PAINT_WORDS; i >= 1; --i) {
        if (top[-(int32_t)i] != EB_PAINT) {
            return i * 4u;
        }
    }
    return 0;
}

static uint64_t calibrate(uint32_t n) {
    ticks_start();
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    return ticks_elapsed();
}

int main(void) {
    static int32_t out[EB_TEXT_OUT];
    const int32_t *ids = eb_test_ids;
    uint32_t *top;
    int i, k, rc;
    printf("calibrate %lu %lu\n", (unsigned long)calibrate(1000000u), 2000000ul);
    for (i = 0; i < eb_test_n; ++i) {
        uint64_t t;
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
