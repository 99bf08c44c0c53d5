/* Every op the runtime knows, readable in one screen. Adding an op: a file in ops/ with its
 * check, plan, forward and backward, one enum value in internal.h, one line here. */
#include "../internal.h"

extern const ie_op_def ie_op_gemm, ie_op_relu, ie_op_reshape, ie_op_conv, ie_op_maxpool, ie_op_avgpool, ie_op_add,
    ie_op_sub, ie_op_batchnorm, ie_op_activation;

static const ie_op_def *const registry[IE_OP_COUNT] = {
    [IE_OP_GEMM] = &ie_op_gemm,
    [IE_OP_RELU] = &ie_op_relu,
    [IE_OP_RESHAPE] = &ie_op_reshape,
    [IE_OP_CONV] = &ie_op_conv,
    [IE_OP_MAXPOOL] = &ie_op_maxpool,
    [IE_OP_AVGPOOL] = &ie_op_avgpool,
    [IE_OP_ADD] = &ie_op_add,
    [IE_OP_SUB] = &ie_op_sub,
    [IE_OP_BATCHNORM] = &ie_op_batchnorm,
    [IE_OP_ACTIVATION] = &ie_op_activation,
};

const ie_op_def *ie_op_lookup(uint32_t op) { return op < IE_OP_COUNT ? registry[op] : NULL; }
