// tfasc firmware startup for the emulated Cortex-M boards (QEMU mps2-an386, mps3-an547).
// A real board uses its vendor's startup file instead; everything else of the firmware is the same.
// Reset: copy .data from its load address, zero .bss, enable the FPU (CP10/CP11) when the core has
// one, set up newlib's semihosting handles and C++ constructors, run main, exit through semihosting
// so that main's return value becomes QEMU's exit status.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern int main(void);

void Reset_Handler(void) __attribute__((noreturn));

// What crti/crtbegin would provide without -nostartfiles: the C++ runtime's handle for destructors
// registered with __cxa_atexit, and the empty _init/_fini newlib's __libc_init_array calls.
void* __dso_handle = 0;
void _init(void) {}
void _fini(void) {}
void Fault_Handler(void) __attribute__((noreturn));

void Reset_Handler(void) {
  uint32_t* src = &__data_load__;
  for (uint32_t* dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
  volatile uint32_t* cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= (0xFu << 20);  // full access to CP10 and CP11 (FPU, MVE)
  __asm volatile("dsb\n\tisb" ::: "memory");
#endif
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

// TFLite Micro's failed checks (TFLITE_DCHECK, TF_LITE_ASSERT, TFLITE_ABORT) call abort(): say so on the
// host's stdout and end the run with status 4 (newlib's abort would end it without a word).
void abort(void) {
  printf("tfasc-error abort(): a TFLite Micro kernel check failed\n");
  exit(4);
}

// Any fault ends the run with status 3 (HardFault, MemManage, BusFault, UsageFault).
void Fault_Handler(void) {
  exit(3);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top__), Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,
};
