/* Every op the runtime knows, readable in one screen. Adding an op: a file in ops/ with its
 * check, plan, forward and backward, one enum value in internal.h, one line here. */
#include "../internal.h"

/* A firmware can keep only the ops its model uses, so that the linker drops the rest: built with
 * IE_OPS_SELECTED, this file reads intedge_ops.h (`intedge compile` writes it: IE_OP_USE_<OP> 1
 * for each op of the model) and registers those alone; an op left out is never referenced. Other
 * builds register every op. */
#ifdef IE_OPS_SELECTED
#include "intedge_ops.h"
#define IE_USE(op) IE_OP_USE_##op
#else
#define IE_USE(op) 1
#endif

extern const ie_op_def ie_op_gemm, ie_op_relu, ie_op_reshape, ie_op_conv, ie_op_maxpool, ie_op_avgpool, ie_op_binary,
    ie_op_concat, ie_op_batchnorm, ie_op_activation, ie_op_transpose, ie_op_pad, ie_op_resize, ie_op_dropout,
    ie_op_layernorm, ie_op_softmax, ie_op_matmul, ie_op_param_broadcast, ie_op_embedding, ie_op_cast,
    ie_op_slice, ie_op_conv_transpose;


static const ie_op_def *const registry[IE_OP_COUNT] = {
    [IE_OP_GEMM] = IE_USE(GEMM) ? &ie_op_gemm : NULL,
    [IE_OP_RELU] = IE_USE(RELU) ? &ie_op_relu : NULL,
    [IE_OP_RESHAPE] = IE_USE(RESHAPE) ? &ie_op_reshape : NULL,
    [IE_OP_CONV] = IE_USE(CONV) ? &ie_op_conv : NULL,
    [IE_OP_MAXPOOL] = IE_USE(MAXPOOL) ? &ie_op_maxpool : NULL,
    [IE_OP_AVGPOOL] = IE_USE(AVGPOOL) ? &ie_op_avgpool : NULL,
    [IE_OP_BINARY] = IE_USE(BINARY) ? &ie_op_binary : NULL,
    [IE_OP_CONCAT] = IE_USE(CONCAT) ? &ie_op_concat : NULL,
    [IE_OP_BATCHNORM] = IE_USE(BATCHNORM) ? &ie_op_batchnorm : NULL,
    [IE_OP_ACTIVATION] = IE_USE(ACTIVATION) ? &ie_op_activation : NULL,
    [IE_OP_TRANSPOSE] = IE_USE(TRANSPOSE) ? &ie_op_transpose : NULL,
    [IE_OP_PAD] = IE_USE(PAD) ? &ie_op_pad : NULL,
    [IE_OP_RESIZE] = IE_USE(RESIZE) ? &ie_op_resize : NULL,
    [IE_OP_DROPOUT] = IE_USE(DROPOUT) ? &ie_op_dropout : NULL,
    [IE_OP_LAYERNORM] = IE_USE(LAYERNORM) ? &ie_op_layernorm : NULL,
    [IE_OP_SOFTMAX] = IE_USE(SOFTMAX) ? &ie_op_softmax : NULL,
    [IE_OP_MATMUL] = IE_USE(MATMUL) ? &ie_op_matmul : NULL,
    [IE_OP_PARAM_BROADCAST] = IE_USE(PARAM_BROADCAST) ? &ie_op_param_broadcast : NULL,
    [IE_OP_EMBEDDING] = IE_USE(EMBEDDING) ? &ie_op_embedding : NULL,
    [IE_OP_CAST] = IE_USE(CAST) ? &ie_op_cast : NULL,
    [IE_OP_SLICE] = IE_USE(SLICE) ? &ie_op_slice : NULL,
    [IE_OP_CONV_TRANSPOSE] = IE_USE(CONV_TRANSPOSE) ? &ie_op_conv_transpose : NULL,
};

const ie_op_def *ie_op_lookup(uint32_t op) { return op < IE_OP_COUNT ? registry[op] : NULL; }
