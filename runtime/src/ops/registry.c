/* Every op the runtime knows, readable in one screen. Adding an op: a file in ops/ with its
 * check, plan, forward and backward, one enum value in internal.h, one line here. */
#include "../internal.h"

extern const ie_op_def ie_op_gemm, ie_op_relu, ie_op_reshape;

static const ie_op_def *const registry[IE_OP_COUNT] = {
    [IE_OP_GEMM] = &ie_op_gemm,
    [IE_OP_RELU] = &ie_op_relu,
    [IE_OP_RESHAPE] = &ie_op_reshape,
};

const ie_op_def *ie_op_lookup(uint32_t op) { return op < IE_OP_COUNT ? registry[op] : NULL; }
