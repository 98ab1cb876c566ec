/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * insn_count.c - a QEMU TCG plugin that counts executed guest instructions.
 *
 * Loaded into qemu-system-arm with
 *     -plugin insn_count.so[,mark=0xADDR] -d plugin -D LOGFILE
 * it writes to QEMU's log:
 *     tfasc-mark <count>    each time the instruction at ADDR is about to execute
 *     tfasc-total <count>   once, when QEMU exits
 * where <count> is the number of guest instructions executed before that point.
 * These are instructions, not cycles: QEMU models no timing.
 *
 * Counting.  At translation time every translated block (TB) gets an inline
 * "add n to the counter" op, n being the TB's instruction count; the add runs at
 * the start of every execution of the TB.  QEMU runs a TB to its end except when
 * an instruction inside it raises an exception, so the counter is exact at TB
 * boundaries; a block left early (a fault) would be overcounted by the
 * instructions it skipped, which does not happen in straight-line firmware.
 *
 * Marks.  When the mark address is translated (in however many TBs contain it),
 * the plugin registers an instruction callback on it carrying k = the number of
 * instructions of that TB from the mark to the TB's end (the mark included).
 * The TB's inline add has already run when the callback fires, so the counter
 * is ahead by exactly k; the callback reports counter - k, i.e. the instructions
 * executed strictly before the mark.  The difference of two marks is therefore
 * exactly the instructions executed from one execution of the mark instruction
 * (included) to the next (excluded), whatever the TB layout.
 *
 * One vCPU is assumed (a plain counter, no atomics): enough for Cortex-M boards.
 *
 * Why the API declarations below are local: Debian's qemu-system-arm has plugin
 * support compiled in but ships neither plugin binaries nor the qemu-plugin.h
 * header.  The few items this file uses are therefore declared here, written
 * against the QEMU 7.2 plugin API (API version 1); the functions themselves are
 * resolved from the QEMU executable when it dlopen()s this library.
 */

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- QEMU 7.2 plugin ABI: the subset used here -------------------------- */

#define TFASC_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;

/* API level this plugin is written against (QEMU 7.2 reports 1). */
#define QEMU_PLUGIN_VERSION 1

/* Opaque handles passed in by QEMU. */
struct qemu_plugin_tb;
struct qemu_plugin_insn;

/* What QEMU tells the plugin at install time (only target_name is read). */
typedef struct qemu_info_t {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus;
            int max_vcpus;
        } system;
    };
} qemu_info_t;

/* Whether a callback reads/writes guest registers (we touch none). */
enum qemu_plugin_cb_flags {
    QEMU_PLUGIN_CB_NO_REGS = 0,
    QEMU_PLUGIN_CB_R_REGS = 1,
    QEMU_PLUGIN_CB_RW_REGS = 2,
};

/* Inline operations QEMU can emit into translated code. */
enum qemu_plugin_op {
    QEMU_PLUGIN_INLINE_ADD_U64 = 0,
};

typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

/* QEMU reads this symbol to check the API level before calling install. */
TFASC_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* ---- the counter ---------------------------------------------------------- */

static uint64_t executed;      /* instructions executed so far (TB granularity) */
static bool have_mark;
static uint64_t mark_address;  /* Thumb bit cleared */

static void emit(const char *label, uint64_t count)
{
    char line[64];
    snprintf(line, sizeof line, "%s %" PRIu64 "\n", label, count);
    qemu_plugin_outs(line);
}

/* userdata carries how far the counter is ahead of the mark instruction. */
static void on_mark(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    emit("tfasc-mark", executed - (uint64_t)(uintptr_t)userdata);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
    if (!have_mark) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (qemu_plugin_insn_vaddr(insn) == mark_address) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)(n - i));
        }
    }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    emit("tfasc-total", executed);
}

TFASC_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "mark=", 5) == 0) {
            char *end = NULL;
            unsigned long long value = strtoull(arg + 5, &end, 16);
            if (end == arg + 5 || *end != '\0') {
                fprintf(stderr, "insn_count: bad mark address '%s' (want mark=0xHEX)\n", arg + 5);
                return -1;
            }
            mark_address = (uint64_t)value & ~(uint64_t)1;
            have_mark = true;
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s'\n", arg);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
