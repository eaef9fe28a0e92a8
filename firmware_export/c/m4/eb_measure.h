/* eb_measure.h - what the Cortex-M4 test applications measure with: SysTick counts (QEMU's
 * -icount mode makes them deterministic; 24 bits at 1/40 of the instruction rate, far beyond one
 * inference) calibrated on a loop of known length, and the stack high-water mark (paint the
 * stack below the caller, run, find the deepest word that changed). Part of edgebert (Apache-2.0). */
#ifndef EB_MEASURE_H
#define EB_MEASURE_H

#include <stdint.h>

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static void ticks_start(void) {
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u; /* enable, processor clock, no interrupt */
}

static uint32_t ticks_elapsed(void) {
    return 0x00FFFFFFu - (SYST_CVR & 0x00FFFFFFu);
}

/* Stack high-water mark: paint the stack below the caller with a pattern, run, find the deepest
 * word that changed. */
#define EB_PAINT_WORDS 2048u
#define EB_PAINT 0xA5C3E1F0u

static uint32_t *paint_base(void) {
    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return (uint32_t *)(sp - 64u); /* leave this function's own frame alone */
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

/* 2 instructions per iteration (subs, bne): SysTick ticks per instruction, for calibration */
static uint32_t calibrate(uint32_t n) {
    ticks_start();
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    return ticks_elapsed();
}

#endif /* EB_MEASURE_H */
