/* Step profile (off unless ie_test_profile hands a session an array): cumulative nanoseconds per
 * node, phase and kind of work, from the port's monotonic clock. Everything is timed on the
 * calling thread: with a pool, a phase reads the wall time of thread 0's share (its spinning
 * while it waits included) and a kind the part it ran itself. Each reading costs about 0.1 us
 * here, so work cut into very many small calls reads a little slow. Off, every hook is one NULL
 * test. */
#ifndef IE_PROFILE_H
#define IE_PROFILE_H

#include <stdint.h>

#include "../port/ie_port.h"

enum { IE_PROF_FWD, IE_PROF_DX, IE_PROF_DW, IE_PROF_OPT, IE_PROF_PHASES };
/* TOTAL: the phase's whole time; the rest: parts of it (what is left is elementwise work) */
enum { IE_PROF_TOTAL, IE_PROF_GEMM, IE_PROF_PACK, IE_PROF_IM2COL, IE_PROF_ROUND, IE_PROF_KINDS };

typedef struct ie_prof {
    uint64_t *ns;          /* [node][phase][kind]; the row after the last node: input and loss */
    uint32_t node, phase;  /* the open interval, if open */
    uint64_t since;
    int open;
} ie_prof;

#if defined(IE_PROFILE)
static inline uint64_t *ie_prof_cell(ie_prof *p, uint32_t phase, uint32_t kind) {
    return &p->ns[((size_t)p->node * IE_PROF_PHASES + phase) * IE_PROF_KINDS + kind];
}

/* Closes the open interval and opens (node, phase); ie_prof_leave closes it. */
static inline void ie_prof_enter(ie_prof *p, uint32_t node, uint32_t phase) {
    if (!p) return;
    uint64_t now = ie_port_clock_ns();
    if (p->open) *ie_prof_cell(p, p->phase, IE_PROF_TOTAL) += now - p->since;
    p->node = node;
    p->phase = phase;
    p->since = now;
    p->open = 1;
}
static inline void ie_prof_leave(ie_prof *p) {
    if (!p || !p->open) return;
    *ie_prof_cell(p, p->phase, IE_PROF_TOTAL) += ie_port_clock_ns() - p->since;
    p->open = 0;
}
/* The same node, another phase; returns the phase it left (for a nested step to go back to). */
static inline uint32_t ie_prof_switch(ie_prof *p, uint32_t phase) {
    if (!p || !p->open) return phase;
    uint32_t was = p->phase;
    ie_prof_enter(p, p->node, phase);
    return was;
}

/* A kind of work inside the open phase: t0 = ie_prof_start(p); ...; ie_prof_add(p, kind, t0). */
static inline uint64_t ie_prof_start(const ie_prof *p) { return p && p->open ? ie_port_clock_ns() : 0; }
static inline void ie_prof_add(ie_prof *p, uint32_t kind, uint64_t t0) {
    if (p && p->open) *ie_prof_cell(p, p->phase, kind) += ie_port_clock_ns() - t0;
}

#else /* builds without IE_PROFILE (bare metal, `intedge compile`): the hooks are empty */
static inline void ie_prof_enter(ie_prof *p, uint32_t node, uint32_t phase) { (void)p, (void)node, (void)phase; }
static inline void ie_prof_leave(ie_prof *p) { (void)p; }
static inline uint32_t ie_prof_switch(ie_prof *p, uint32_t phase) { (void)p; return phase; }
static inline uint64_t ie_prof_start(const ie_prof *p) { (void)p; return 0; }
static inline void ie_prof_add(ie_prof *p, uint32_t kind, uint64_t t0) { (void)p, (void)kind, (void)t0; }
#endif

#endif
