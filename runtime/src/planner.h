/* The memory planner: every transient buffer of a step gets an interval of schedule positions,
 * and a greedy best-fit by size places them in one region (after TensorFlow Lite Micro). */
#ifndef IE_PLANNER_H
#define IE_PLANNER_H

#include "internal.h"

typedef enum ie_buf_kind {
    IE_BUF_VALUE_Q,   /* index = tensor */
    IE_BUF_VALUE_G,   /* index = tensor */
    IE_BUF_NODE,      /* index = node, slot = scratch slot */
    IE_BUF_PARAM_W8,  /* index = parameter */
    IE_BUF_PARAM_GRAD,
    IE_BUF_LOSS_ACC,
    IE_BUF_TARGETS,
    IE_BUF_GRAD_SLOT  /* index = slot */
} ie_buf_kind;

struct ie_plan_buffer {
    uint8_t kind, slot;
    uint32_t index;
    uint32_t first, last;
    size_t bytes, offset;
};

uint32_t ie_planner_capacity(uint32_t n_tensors, uint32_t n_nodes);
/* Gradient slots: one per (node, input) whose input activation feeds several nodes. */
uint32_t ie_count_grad_slots(const ie_model *m);
size_t ie_planner_scratch_bytes(uint32_t capacity, uint32_t n_tensors);

/* Plans the transient region for (model, config). With s != NULL, also points the session's
 * buffers into `region`. *region_bytes receives the size. */
ie_status ie_plan_region(ie_model *m, const ie_session_config *cfg, ie_session *s, uint8_t *region,
                         size_t *region_bytes);

/* ---- what ops call from their plan callback ---- */
const ie_model *ie_plan_model(const ie_planner *p);
uint32_t ie_plan_batch(const ie_planner *p);
const ie_session_config *ie_plan_config(const ie_planner *p);
/* Threads the session will run (per-thread scratch is sized by it). */
uint32_t ie_plan_threads(const ie_planner *p);
int ie_plan_requires_grad(const ie_planner *p, uint32_t tensor);
int ie_plan_param_trainable(const ie_planner *p, uint32_t tensor);
/* bytes: IE_SIZE(...) of the op's sizes, so that nothing wraps before the planner refuses it */
void ie_plan_node_scratch(ie_planner *p, uint32_t node, uint32_t slot, uint64_t bytes, uint32_t first, uint32_t last);
void ie_plan_param_buffer(ie_planner *p, uint32_t tensor, ie_buf_kind kind, uint64_t bytes, uint32_t first,
                          uint32_t last);
void ie_plan_keep(ie_planner *p, uint32_t tensor, uint32_t until);
void ie_plan_alias(ie_planner *p, uint32_t view, uint32_t base);
/* Refuses the config (e.g. a batch too large for an op's exact sums); msg is static text. */
void ie_plan_refuse(ie_planner *p, uint32_t node, const char *msg);

#endif
