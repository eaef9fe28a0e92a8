/* startup.c - minimal Cortex-M4 start-up for edgebert firmware images (C99 + GNU attributes).
 * Vector table (initial stack pointer, reset handler), .bss zeroed, FPU enabled; then main()
 * (bare images) or newlib's _start (EB_SEMIHOSTING: rdimon, which opens semihosting and calls
 * main). Part of edgebert (Apache-2.0). */
#include <stdint.h>

extern uint32_t __stack_top, __bss_start__, __bss_end__;
void eb_reset_handler(void);
void eb_fault_handler(void);
#ifdef EB_SEMIHOSTING
extern void _start(void);
#define EB_ENTRY _start()
#else
extern int main(void);
#define EB_ENTRY (void)main()
#endif

__attribute__((section(".vectors"), used)) static const void *const eb_vectors[16] = {
    &__stack_top, (const void *)eb_reset_handler, (const void *)eb_fault_handler, (const void *)eb_fault_handler,
    (const void *)eb_fault_handler, (const void *)eb_fault_handler, (const void *)eb_fault_handler, 0, 0, 0, 0,
    (const void *)eb_fault_handler, (const void *)eb_fault_handler, 0, (const void *)eb_fault_handler,
    (const void *)eb_fault_handler,
};

void eb_reset_handler(void) {
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    uint32_t *p;
    for (p = &__bss_start__; p < &__bss_end__; ++p) {
        *p = 0;
    }
    *cpacr |= (0xFu << 20); /* CP10, CP11: full access to the FPU */
    __asm volatile("dsb\n\tisb");
    EB_ENTRY;
    for (;;) {
    }
}

void eb_fault_handler(void) {
    for (;;) {
    }
}
