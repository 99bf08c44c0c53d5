/* Every op the runtime knows, readable in one screen. Adding an op: a file in ops/ with its
 * check, plan, forward and backward, one enum value in internal.h, one line here. */
#include "../internal.h"

extern const ie_op_def ie_op_gemm, ie_op_relu, ie_op_reshape, ie_op_conv, ie_op_maxpool, ie_op_avgpool, ie_op_binary,
    ie_op_concat, ie_op_batchnorm, ie_op_activation, ie_op_transpose, ie_op_pad, ie_op_resize, ie_op_dropout;

#if IE_HAVE_TRANSFORMER_OPS
extern const ie_op_def ie_op_layernorm, ie_op_softmax;
#else /* left out of this build (internal.h): a model using them is refused, naming the way to get them */
static ie_status left_out(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)m, (void)nd, (void)errlen;
    ie_set_err(err, "%s", IE_NO_TRANSFORMER_OPS_MSG);
    return IE_ERR_UNSUPPORTED;
}
static const ie_op_def ie_op_layernorm = {"LayerNormalization", 0, IE_MAX_INPUTS, 1, left_out, NULL, NULL, NULL};
static const ie_op_def ie_op_softmax = {"Softmax", 0, IE_MAX_INPUTS, 1, left_out, NULL, NULL, NULL};
#endif

static const ie_op_def *const registry[IE_OP_COUNT] = {
    [IE_OP_GEMM] = &ie_op_gemm,
    [IE_OP_RELU] = &ie_op_relu,
    [IE_OP_RESHAPE] = &ie_op_reshape,
    [IE_OP_CONV] = &ie_op_conv,
    [IE_OP_MAXPOOL] = &ie_op_maxpool,
    [IE_OP_AVGPOOL] = &ie_op_avgpool,
    [IE_OP_BINARY] = &ie_op_binary,
    [IE_OP_CONCAT] = &ie_op_concat,
    [IE_OP_BATCHNORM] = &ie_op_batchnorm,
    [IE_OP_ACTIVATION] = &ie_op_activation,
    [IE_OP_TRANSPOSE] = &ie_op_transpose,
    [IE_OP_PAD] = &ie_op_pad,
    [IE_OP_RESIZE] = &ie_op_resize,
    [IE_OP_DROPOUT] = &ie_op_dropout,
    [IE_OP_LAYERNORM] = &ie_op_layernorm,
    [IE_OP_SOFTMAX] = &ie_op_softmax,
};

const ie_op_def *ie_op_lookup(uint32_t op) { return op < IE_OP_COUNT ? registry[op] : NULL; }
