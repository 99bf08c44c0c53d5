/* Startup for the MPS2 boards: vector table, .data copy, .bss clear, semihosting, main. Faults
 * end the program with a failure status so a crashed test never passes. The stack is painted
 * first so the exit can report how much of it the program used (the RAM budget counts it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_limit, _stack_top;
extern int main(void);
extern void initialise_monitor_handles(void);
void Reset_Handler(void);
void Fault_Handler(void);

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&_stack_top, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,
};

#define STACK_PAINT 0x5AFEC0DEu

static void report_stack(void) {
    const uint32_t *p = &_stack_limit;
    while (p < &_stack_top && *p == STACK_PAINT) p++;
    fprintf(stderr, "stack used %u B\n", (unsigned)((const char *)&_stack_top - (const char *)p));
}

void Reset_Handler(void) {
    memcpy(&_data_start, &_data_load, (size_t)((char *)&_data_end - (char *)&_data_start));
    memset(&_bss_start, 0, (size_t)((char *)&_bss_end - (char *)&_bss_start));
#if defined(__ARM_FP)
    /* grant CP10/CP11 (the FPU) so newlib's hard-float build may save registers */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
#endif
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = &_stack_limit; p < sp - 16; p++) *p = STACK_PAINT;
    initialise_monitor_handles();
    atexit(report_stack);
    exit(main());
}

void Fault_Handler(void) {
    fputs("fault: the program crashed\n", stderr);
    exit(70);
}
