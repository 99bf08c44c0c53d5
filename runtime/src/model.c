/* The .iem model file: parsing and validation of untrusted bytes (docs/format.md).
 * Every offset, size, count, shape and op parameter is checked before it is used. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../port/ie_port.h"
#include "internal.h"
#include "planner.h"

#define IEM_MAGIC "IEM1"
#define IEM_VERSION 1
#define IEM_HEADER_SIZE 40
#define IEM_TENSOR_SIZE 48
#define IEM_NODE_SIZE 120
#define IEM_MAX_TENSORS 65536
#define IEM_MAX_NODES 65536
#define IEM_MAX_NUMEL (1u << 28)


void ie_set_err(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, IE_ERRMSG_LEN, fmt, ap);
    va_end(ap);
}

uint32_t ie_crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    /* nibble table: small enough for flash, fast enough for load time */
    static const uint32_t t[16] = {0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4,
                                   0x4DB26158, 0x5005713C, 0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C,
                                   0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C};
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        c = (c >> 4) ^ t[c & 15];
        c = (c >> 4) ^ t[c & 15];
    }
    return ~c;
}

uint32_t ie_crc32(const uint8_t *p, size_t n) { return ie_crc32_update(0, p, n); }

/* [off, off+len) lies inside the buffer (no overflow: 64-bit sums of 32-bit values). */
static int in_bounds(const ie_model *m, uint32_t off, uint64_t len) { return (uint64_t)off + len <= m->size; }

__attribute__((format(printf, 3, 4))) static ie_status fail(ie_model *m, ie_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->errmsg, IE_ERRMSG_LEN, fmt, ap);
    va_end(ap);
    return st;
}

/* A name: inside the buffer, followed by a NUL, no NUL inside. */
static int read_name(const ie_model *m, uint32_t off, uint32_t len, const char **out) {
    if (!in_bounds(m, off, (uint64_t)len + 1) || m->data[off + len] != 0) return 0;
    if (memchr(m->data + off, 0, len)) return 0;
    *out = (const char *)(m->data + off);
    return 1;
}

static ie_status parse_tensors(ie_model *m, uint32_t table) {
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const uint8_t *r = m->data + table + (size_t)i * IEM_TENSOR_SIZE;
        ie_tensor_desc *t = &m->tensors[i];
        t->kind = r[0];
        t->rank = r[1];
        t->producer = t->consumer = t->first_consumer = t->param = IE_NONE;
        if (t->kind > IE_KIND_ACTIVATION) return fail(m, IE_ERR_FORMAT, "tensor %" PRIu32 ": unknown kind %u", i, t->kind);
        uint16_t flags = ie_rd16(r + 2);
        if ((flags & ~(uint32_t)(IE_TENSOR_STATE | IE_TENSOR_IDS)) || ie_rd32(r + 44))
            return fail(m, IE_ERR_FORMAT, "tensor %" PRIu32 ": reserved fields are not 0", i);
        t->state = (flags & IE_TENSOR_STATE) != 0;
        t->ids = (flags & IE_TENSOR_IDS) != 0;
        t->ids_limit = IE_NONE;
        if (t->state && t->kind != IE_KIND_PARAM) return fail(m, IE_ERR_FORMAT, "tensor %" PRIu32 ": only parameters hold state", i);
        if (t->ids && t->kind != IE_KIND_INPUT) return fail(m, IE_ERR_FORMAT, "tensor %" PRIu32 ": only inputs hold ids", i);
        if (t->rank < 1 || t->rank > IE_MAX_RANK)
            return fail(m, IE_ERR_FORMAT, "tensor %" PRIu32 ": rank %u outside 1..%d", i, t->rank, IE_MAX_RANK);
        uint64_t numel = 1;
        for (uint32_t d = 0; d < IE_MAX_RANK; d++) {
            t->dims[d] = ie_rd32(r + 4 + 4 * d);
            if (d < t->rank) {
                if (t->dims[d] == 0) return fail(m, IE_ERR_FORMAT, "tensor %" PRIu32 ": dimension %" PRIu32 " is 0", i, d);
                numel *= t->dims[d];
                if (numel > IEM_MAX_NUMEL)
                    return fail(m, IE_ERR_UNSUPPORTED, "tensor %" PRIu32 ": more than %u elements", i, IEM_MAX_NUMEL);
            } else if (t->dims[d] != 0) {
                return fail(m, IE_ERR_FORMAT, "tensor %" PRIu32 ": dimension %" PRIu32 " beyond rank is not 0", i, d);
            }
        }
        t->numel = (uint32_t)numel;
        if (!read_name(m, ie_rd32(r + 28), ie_rd32(r + 32), &t->name))
            return fail(m, IE_ERR_FORMAT, "tensor %" PRIu32 ": name out of bounds or not terminated", i);
        uint32_t doff = ie_rd32(r + 36), dlen = ie_rd32(r + 40);
        if (t->kind == IE_KIND_PARAM) {
            if (dlen != 4 * numel)
                return fail(m, IE_ERR_FORMAT, "parameter '%s': %" PRIu32 " data bytes, expected %" PRIu32, t->name, dlen,
                            (uint32_t)(4 * numel));
            if (!in_bounds(m, doff, dlen)) return fail(m, IE_ERR_FORMAT, "parameter '%s': data out of bounds", t->name);
            t->data = m->data + doff;
            t->param = m->n_params++;
        } else if (dlen != 0) {
            return fail(m, IE_ERR_FORMAT, "tensor '%s': only parameters carry data", t->name);
        }
    }
    return IE_OK;
}

static ie_status parse_nodes(ie_model *m, uint32_t table) {
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        const uint8_t *r = m->data + table + (size_t)i * IEM_NODE_SIZE;
        ie_node_desc *nd = &m->nodes[i];
        nd->op = ie_rd16(r);
        nd->n_in = r[2];
        nd->n_out = r[3];
        for (int k = 0; k < IE_MAX_INPUTS; k++) nd->in[k] = ie_rd32(r + 4 + 4 * k);
        for (int k = 0; k < IE_MAX_OUTPUTS; k++) nd->out[k] = ie_rd32(r + 36 + 4 * k);
        for (int k = 0; k < IE_MAX_ATTRS; k++) nd->attrs[k] = (int32_t)ie_rd32(r + 44 + 4 * k);
        if (!read_name(m, ie_rd32(r + 108), ie_rd32(r + 112), &nd->name))
            return fail(m, IE_ERR_FORMAT, "node %" PRIu32 ": name out of bounds or not terminated", i);
        if (ie_rd32(r + 116)) return fail(m, IE_ERR_FORMAT, "node '%s': reserved field is not 0", nd->name);
        const ie_op_def *def = ie_op_lookup(nd->op);
        if (!def)
            return fail(m, IE_ERR_UNSUPPORTED, "node '%s': op code %u is unknown or not in this build (a firmware built "
                        "with IE_OPS_SELECTED keeps the ops its intedge_ops.h lists)", nd->name, nd->op);
        if (nd->n_in < def->min_in || nd->n_in > def->max_in || nd->n_out != def->n_out)
            return fail(m, IE_ERR_FORMAT, "node '%s' (%s): %u inputs and %u outputs do not fit the op", nd->name,
                        def->name, nd->n_in, nd->n_out);
        for (uint32_t k = 0; k < nd->n_in; k++) {
            uint32_t t = nd->in[k];
            if (t >= m->n_tensors) return fail(m, IE_ERR_FORMAT, "node '%s': input %" PRIu32 " out of range", nd->name, k);
            ie_tensor_desc *td = &m->tensors[t];
            if (td->kind == IE_KIND_ACTIVATION && td->producer == IE_NONE)
                return fail(m, IE_ERR_FORMAT, "node '%s': input '%s' is used before it is produced", nd->name, td->name);
            for (uint32_t j = 0; j < k; j++)
                if (nd->in[j] == t && td->kind != IE_KIND_PARAM)
                    return fail(m, IE_ERR_UNSUPPORTED, "node '%s' reads '%s' twice", nd->name, td->name);
            if (td->kind == IE_KIND_PARAM && td->consumer != IE_NONE)
                return fail(m, IE_ERR_UNSUPPORTED, "parameter '%s' is shared by two nodes", td->name);
            if (td->n_consumers == IE_MAX_FANOUT)
                return fail(m, IE_ERR_UNSUPPORTED, "tensor '%s' feeds more than %d nodes", td->name, IE_MAX_FANOUT);
            if (td->first_consumer == IE_NONE) td->first_consumer = i;
            td->consumer = i;
            td->n_consumers++;
        }
        for (uint32_t k = 0; k < nd->n_out; k++) {
            uint32_t t = nd->out[k];
            if (t >= m->n_tensors) return fail(m, IE_ERR_FORMAT, "node '%s': output %" PRIu32 " out of range", nd->name, k);
            ie_tensor_desc *td = &m->tensors[t];
            if (td->kind != IE_KIND_ACTIVATION || td->producer != IE_NONE)
                return fail(m, IE_ERR_FORMAT, "node '%s': output '%s' is not a fresh activation", nd->name, td->name);
            td->producer = i;
        }
        char err[IE_ERRMSG_LEN];
        err[0] = 0;
        if (def->check(m, nd, err, sizeof err) != IE_OK)
            return fail(m, IE_ERR_FORMAT, "node '%s' (%s): %s", nd->name, def->name, err);
    }
    return IE_OK;
}

/* Integer inputs feed only the ops that read integers: an Embedding (whose table bounds the
 * values, checked when a batch arrives) or a Cast to int8. */
static ie_status check_ids_readers(ie_model *m) {
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        const ie_node_desc *nd = &m->nodes[i];
        for (uint32_t k = 0; k < nd->n_in; k++) {
            ie_tensor_desc *t = &m->tensors[nd->in[k]];
            if (!t->ids) continue;
            if (nd->op == IE_OP_EMBEDDING && k == 1) {
                uint32_t rows = m->tensors[nd->in[0]].dims[0];
                if (rows < t->ids_limit) t->ids_limit = rows;
            } else if (nd->op != IE_OP_CAST) {
                return fail(m, IE_ERR_FORMAT, "node '%s' (%s) cannot read the integer input '%s'", nd->name,
                            ie_op_lookup(nd->op)->name, t->name);
            }
        }
    }
    return IE_OK;
}

static ie_status validate_graph(ie_model *m) {
    uint32_t first_input = IE_NONE;
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind == IE_KIND_INPUT) {
            if (first_input == IE_NONE) first_input = i;
            m->n_inputs++;
        }
    if (m->input != first_input)
        return fail(m, IE_ERR_FORMAT, "the graph input is not the first input tensor");
    if (m->output >= m->n_tensors || m->tensors[m->output].kind != IE_KIND_ACTIVATION ||
        m->tensors[m->output].producer == IE_NONE)
        return fail(m, IE_ERR_FORMAT, "the graph output is not produced by any node");
    if (m->tensors[m->output].consumer != IE_NONE)
        return fail(m, IE_ERR_UNSUPPORTED, "the graph output '%s' also feeds a node", m->tensors[m->output].name);
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const ie_tensor_desc *t = &m->tensors[i];
        if (t->kind == IE_KIND_ACTIVATION && t->producer == IE_NONE)
            return fail(m, IE_ERR_FORMAT, "activation '%s' is never produced", t->name);
        if (t->kind == IE_KIND_ACTIVATION && i != m->output && t->consumer == IE_NONE)
            return fail(m, IE_ERR_FORMAT, "activation '%s' is never used", t->name);
    }
    return check_ids_readers(m);
}

/* The header: magic, version, size, CRC of the whole buffer, table counts and bounds. */
static ie_status parse_header(ie_model *m) {
    const uint8_t *d = m->data;
    if (m->size < IEM_HEADER_SIZE)
        return fail(m, IE_ERR_FORMAT, "buffer of %lu bytes is shorter than the .iem header", (unsigned long)m->size);
    if (memcmp(d, IEM_MAGIC, 4) != 0) return fail(m, IE_ERR_FORMAT, "not an .iem model (bad magic)");
    if (ie_rd16(d + 4) != IEM_VERSION)
        return fail(m, IE_ERR_UNSUPPORTED, ".iem version %u; this runtime reads version %u", ie_rd16(d + 4), IEM_VERSION);
    if (ie_rd16(d + 6) != IEM_HEADER_SIZE) return fail(m, IE_ERR_FORMAT, "bad .iem header size");
    if (ie_rd32(d + 8) != m->size)
        return fail(m, IE_ERR_FORMAT, "truncated or padded: header says %" PRIu32 " bytes, buffer has %lu",
                    ie_rd32(d + 8), (unsigned long)m->size);
    if (!ie_crc_ok(d + 16, m->size - 16, ie_rd32(d + 12))) return fail(m, IE_ERR_FORMAT, "CRC mismatch: the model is corrupt");
    m->crc = ie_rd32(d + 12);
    m->n_tensors = ie_rd32(d + 16);
    m->n_nodes = ie_rd32(d + 20);
    m->input = ie_rd32(d + 24);
    m->output = ie_rd32(d + 28);
    uint32_t toff = ie_rd32(d + 32), noff = ie_rd32(d + 36);
    if (m->n_tensors == 0 || m->n_tensors > IEM_MAX_TENSORS || m->n_nodes == 0 || m->n_nodes > IEM_MAX_NODES)
        return fail(m, IE_ERR_FORMAT, "tensor or node count out of range");
    if (!in_bounds(m, toff, (uint64_t)m->n_tensors * IEM_TENSOR_SIZE) ||
        !in_bounds(m, noff, (uint64_t)m->n_nodes * IEM_NODE_SIZE))
        return fail(m, IE_ERR_FORMAT, "tensor or node table out of bounds");
    return IE_OK;
}

/* The tables, into the memory the handle points at (after parse_header accepted the buffer). */
static ie_status parse_tables(ie_model *m) {
    ie_status st = parse_tensors(m, ie_rd32(m->data + 32));
    if (st == IE_OK) st = parse_nodes(m, ie_rd32(m->data + 36));
    if (st == IE_OK) st = validate_graph(m);
    if (st != IE_OK) return st;
    for (uint32_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].param != IE_NONE) m->param_tensor[m->tensors[i].param] = i;
    return IE_OK;
}

/* The model's memory: the handle, then the decoded tables and the planner's scratch, each
 * block aligned. Fixed strides make it the same on every ABI. */
typedef struct model_layout {
    size_t tensors, nodes, params, plan, total;
    uint32_t plan_cap;
} model_layout;

static model_layout layout_for(uint32_t n_tensors, uint32_t n_nodes) {
    model_layout L;
    L.plan_cap = ie_planner_capacity(n_tensors, n_nodes);
    L.tensors = ie_align_up(IE_STRIDE_MODEL);
    L.nodes = L.tensors + ie_align_up((size_t)IE_STRIDE_TENSOR_DESC * n_tensors);
    L.params = L.nodes + ie_align_up((size_t)IE_STRIDE_NODE_DESC * n_nodes);
    L.plan = L.params + ie_align_up(sizeof(uint32_t) * n_tensors);
    L.total = L.plan + ie_align_up(ie_planner_scratch_bytes(L.plan_cap, n_tensors));
    return L;
}

/* Header checks and table counts, without touching the tables (m->tensors stays NULL). */
static ie_status read_counts(const void *data, size_t size, ie_model *m) {
    memset(m, 0, sizeof *m);
    m->data = data;
    m->size = size;
    if (!data) return fail(m, IE_ERR_ARG, "model data is NULL");
    return parse_header(m);
}

ie_status ie_model_memory_size(const void *data, size_t size, size_t *bytes) {
    if (!bytes) return IE_ERR_ARG;
    ie_model probe;
    ie_status st = read_counts(data, size, &probe);
    if (st != IE_OK) return st;
    *bytes = layout_for(probe.n_tensors, probe.n_nodes).total;
    return IE_OK;
}

ie_status ie_model_load_into(const void *data, size_t size, void *mem, size_t mem_size, ie_model **out) {
    if (!out) return IE_ERR_ARG;
    *out = NULL;
    ie_model probe;
    ie_status st = read_counts(data, size, &probe);
    /* a malformed header still gets a handle, to carry the message */
    model_layout L = layout_for(st == IE_OK ? probe.n_tensors : 0, st == IE_OK ? probe.n_nodes : 0);
    int owns = mem == NULL;
    if (owns) {
        mem = ie_port_calloc(L.total);
        if (!mem) return IE_ERR_NOMEM;
    } else {
        if ((uintptr_t)mem % 8 != 0 || mem_size < IE_STRIDE_MODEL) return IE_ERR_ARG;
        memset(mem, 0, mem_size < L.total ? IE_STRIDE_MODEL : L.total);
    }
    ie_model *m = mem;
    *m = probe;
    m->owns_memory = owns;
    *out = m;
    if (st != IE_OK) return st;
    if (mem_size < L.total && !owns)
        return fail(m, IE_ERR_NOMEM, "model memory of %lu bytes is too small: this model needs %lu", (unsigned long)mem_size,
                    (unsigned long)L.total);
    uint8_t *base = mem;
    m->tensors = (ie_tensor_desc *)(base + L.tensors);
    m->nodes = (ie_node_desc *)(base + L.nodes);
    m->param_tensor = (uint32_t *)(base + L.params);
    m->plan_scratch = (ie_plan_buffer *)(base + L.plan);
    m->plan_capacity = L.plan_cap;
    st = parse_tables(m);
    if (st != IE_OK) {
        m->tensors = NULL;
        m->n_tensors = m->n_nodes = m->n_params = 0;
    }
    return st;
}

ie_status ie_model_load(const void *data, size_t size, ie_model **out) {
    return ie_model_load_into(data, size, NULL, 0, out);
}

void ie_model_free(ie_model *m) {
    if (m && m->owns_memory) ie_port_free(m);
}

const char *ie_model_errmsg(const ie_model *m) { return m ? m->errmsg : "model handle is NULL"; }

uint32_t ie_model_param_count(const ie_model *m) { return m ? m->n_params : 0; }

ie_status ie_model_param_info(const ie_model *m, uint32_t index, ie_param_info *out) {
    if (!m || !out || index >= m->n_params) return IE_ERR_ARG;
    const ie_tensor_desc *t = &m->tensors[m->param_tensor[index]];
    out->name = t->name;
    out->rank = t->rank;
    for (int d = 0; d < IE_MAX_RANK; d++) out->dims[d] = t->dims[d];
    out->numel = t->numel;
    return IE_OK;
}

uint32_t ie_model_input_size(const ie_model *m) { return m && m->tensors ? m->tensors[m->input].numel : 0; }

uint32_t ie_model_input_count(const ie_model *m) { return m && m->tensors ? m->n_inputs : 0; }

uint32_t ie_model_input_tensor(const ie_model *m, uint32_t index) {
    for (uint32_t t = 0; t < m->n_tensors; t++)
        if (m->tensors[t].kind == IE_KIND_INPUT && index-- == 0) return t;
    return IE_NONE;
}

static void tensor_info(const ie_tensor_desc *t, ie_input_info *out) {
    out->name = t->name;
    out->rank = t->rank;
    for (int d = 0; d < IE_MAX_RANK; d++) out->dims[d] = t->dims[d];
    out->numel = t->numel;
    out->ids = t->ids;
}

ie_status ie_model_input_info(const ie_model *m, uint32_t index, ie_input_info *out) {
    if (!m || !m->tensors || !out || index >= m->n_inputs) return IE_ERR_ARG;
    tensor_info(&m->tensors[ie_model_input_tensor(m, index)], out);
    return IE_OK;
}

ie_status ie_model_output_info(const ie_model *m, ie_input_info *out) {
    if (!m || !m->tensors || !out) return IE_ERR_ARG;
    tensor_info(&m->tensors[m->output], out);
    return IE_OK;
}

uint32_t ie_model_output_size(const ie_model *m) { return m && m->tensors ? m->tensors[m->output].numel : 0; }
