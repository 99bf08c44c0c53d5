#include "iem_builder.h"

#include <stdlib.h>
#include <string.h>

uint32_t ie_crc32(const uint8_t *p, size_t n);

uint32_t iemb_tensor_add(iem_builder *b, uint8_t kind, uint8_t rank, const uint32_t *dims, const char *name, const float *data) {
    iemb_tensor *t = &b->t[b->nt];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->rank = rank;
    memcpy(t->dims, dims, rank * sizeof(uint32_t));
    strncpy(t->name, name, sizeof t->name - 1);
    t->data = data;
    return b->nt++;
}

void iemb_node_add(iem_builder *b, uint16_t op, const uint32_t *in, uint8_t n_in, uint32_t out, int32_t attr0, const char *name) {
    iemb_node *n = &b->n[b->nn++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->n_in = n_in;
    n->n_out = 1;
    memcpy(n->in, in, n_in * sizeof(uint32_t));
    n->out[0] = out;
    n->attrs[0] = attr0;
    strncpy(n->name, name, sizeof n->name - 1);
}

static void w32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t numel(const iemb_tensor *t) {
    uint32_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->dims[i];
    return n;
}

uint8_t *iemb_finish(const iem_builder *b, uint32_t input, uint32_t output, size_t *size) {
    size_t off = 40 + 48 * (size_t)b->nt + 120 * (size_t)b->nn;
    size_t total = off;
    for (uint32_t i = 0; i < b->nt; i++) total += strlen(b->t[i].name) + 1 + (b->t[i].kind == 1 ? 4 * numel(&b->t[i]) : 0);
    for (uint32_t i = 0; i < b->nn; i++) total += strlen(b->n[i].name) + 1;
    uint8_t *buf = calloc(1, total);
    memcpy(buf, "IEM1", 4);
    buf[4] = 1; buf[6] = 40;
    w32(buf + 8, (uint32_t)total);
    w32(buf + 16, b->nt); w32(buf + 20, b->nn); w32(buf + 24, input); w32(buf + 28, output);
    w32(buf + 32, 40); w32(buf + 36, 40 + 48 * b->nt);
    for (uint32_t i = 0; i < b->nt; i++) {
        const iemb_tensor *t = &b->t[i];
        uint8_t *r = buf + 40 + 48 * i;
        r[0] = t->kind; r[1] = t->rank;
        for (int d = 0; d < t->rank; d++) w32(r + 4 + 4 * d, t->dims[d]);
        size_t len = strlen(t->name);
        w32(r + 28, (uint32_t)off); w32(r + 32, (uint32_t)len);
        memcpy(buf + off, t->name, len); off += len + 1;
        if (t->kind == 1) {
            w32(r + 36, (uint32_t)off); w32(r + 40, 4 * numel(t));
            for (uint32_t k = 0; k < numel(t); k++) { uint32_t bits; memcpy(&bits, &t->data[k], 4); w32(buf + off + 4 * k, bits); }
            off += 4 * numel(t);
        }
    }
    for (uint32_t i = 0; i < b->nn; i++) {
        const iemb_node *n = &b->n[i];
        uint8_t *r = buf + 40 + 48 * b->nt + 120 * i;
        r[0] = (uint8_t)n->op; r[1] = (uint8_t)(n->op >> 8); r[2] = n->n_in; r[3] = n->n_out;
        for (int k = 0; k < 8; k++) w32(r + 4 + 4 * k, n->in[k]);
        for (int k = 0; k < 2; k++) w32(r + 36 + 4 * k, n->out[k]);
        for (int k = 0; k < 16; k++) w32(r + 44 + 4 * k, (uint32_t)n->attrs[k]);
        size_t len = strlen(n->name);
        w32(r + 108, (uint32_t)off); w32(r + 112, (uint32_t)len);
        memcpy(buf + off, n->name, len); off += len + 1;
    }
    iemb_fix_crc(buf, total);
    *size = total;
    return buf;
}

void iemb_fix_crc(uint8_t *buf, size_t size) { w32(buf + 12, ie_crc32(buf + 16, size - 16)); }

uint8_t *iemb_mlp(uint32_t k, uint32_t h, uint32_t c, size_t *size) {
    float *w1 = malloc(sizeof(float) * k * h), *b1 = malloc(sizeof(float) * h);
    float *w2 = malloc(sizeof(float) * h * c), *b2 = malloc(sizeof(float) * c);
    uint32_t x = 12345;
    for (uint32_t i = 0; i < k * h; i++) { x = x * 1103515245u + 12345u; w1[i] = ((float)(x >> 16 & 0x7fff) / 32768.0f - 0.5f) / 2.0f; }
    for (uint32_t i = 0; i < h * c; i++) { x = x * 1103515245u + 12345u; w2[i] = ((float)(x >> 16 & 0x7fff) / 32768.0f - 0.5f) / 2.0f; }
    for (uint32_t i = 0; i < h; i++) b1[i] = 0.01f * (float)i;
    for (uint32_t i = 0; i < c; i++) b2[i] = 0.0f;
    iem_builder b;
    memset(&b, 0, sizeof b);
    uint32_t in = iemb_tensor_add(&b, 0, 1, &k, "x", NULL);
    uint32_t d1[2] = {h, k}, d2[2] = {c, h};
    uint32_t tw1 = iemb_tensor_add(&b, 1, 2, d1, "fc1.weight", w1), tb1 = iemb_tensor_add(&b, 1, 1, &h, "fc1.bias", b1);
    uint32_t a1 = iemb_tensor_add(&b, 2, 1, &h, "a1", NULL), a2 = iemb_tensor_add(&b, 2, 1, &h, "a2", NULL);
    uint32_t tw2 = iemb_tensor_add(&b, 1, 2, d2, "fc2.weight", w2), tb2 = iemb_tensor_add(&b, 1, 1, &c, "fc2.bias", b2);
    uint32_t out = iemb_tensor_add(&b, 2, 1, &c, "logits", NULL);
    uint32_t g1[3] = {in, tw1, tb1}, r1[1] = {a1}, g2[3] = {a2, tw2, tb2};
    iemb_node_add(&b, 1, g1, 3, a1, 1, "fc1");
    iemb_node_add(&b, 2, r1, 1, a2, 0, "relu");
    iemb_node_add(&b, 1, g2, 3, out, 1, "fc2");
    uint8_t *buf = iemb_finish(&b, in, out, size);
    free(w1); free(b1); free(w2); free(b2);
    return buf;
}

void iemb_class_batch(uint32_t seed, uint32_t n, uint32_t k, uint32_t c, uint32_t *x, int32_t *y) {
    uint32_t r = seed * 2654435761u + 7;
    for (uint32_t i = 0; i < n; i++) {
        y[i] = (int32_t)((seed + i) % c);
        for (uint32_t j = 0; j < k; j++) {
            r = r * 1103515245u + 12345u;
            float v = (float)(r >> 16 & 0xff) / 255.0f + (j / (k / c) == (uint32_t)y[i] ? 0.5f : 0.0f);
            memcpy(&x[i * k + j], &v, 4);
        }
    }
}
