/* A small writer of .iem buffers for the C tests (the Python package has the real one). */
#ifndef IEM_BUILDER_H
#define IEM_BUILDER_H
#include <stddef.h>
#include <stdint.h>

#define IEMB_MAX 64
typedef struct iemb_tensor { uint8_t kind, rank; uint32_t dims[6]; char name[32]; const float *data; } iemb_tensor;
typedef struct iemb_node { uint16_t op; uint8_t n_in, n_out; uint32_t in[8], out[2]; int32_t attrs[16]; char name[32]; } iemb_node;
typedef struct iem_builder { iemb_tensor t[IEMB_MAX]; iemb_node n[IEMB_MAX]; uint32_t nt, nn; } iem_builder;

uint32_t iemb_tensor_add(iem_builder *b, uint8_t kind, uint8_t rank, const uint32_t *dims, const char *name, const float *data);
void iemb_node_add(iem_builder *b, uint16_t op, const uint32_t *in, uint8_t n_in, uint32_t out, int32_t attr0, const char *name);
/* Serializes; returns a malloc'd buffer of exactly *size bytes. */
uint8_t *iemb_finish(const iem_builder *b, uint32_t input, uint32_t output, size_t *size);
/* Rewrites the CRC after a test mutates bytes, so validation goes past the checksum. */
void iemb_fix_crc(uint8_t *buf, size_t size);

/* The test MLP: in -> Gemm(k->h) -> Relu -> Gemm(h->c), W as [M,K] (PyTorch Linear). Weights
 * are deterministic pseudo-random. *size receives the length. */
uint8_t *iemb_mlp(uint32_t k, uint32_t h, uint32_t c, size_t *size);

/* A batch of n samples of k features (float32 bits) in c classes, the class raising its share of
 * the features: a task an MLP learns in a few steps. Deterministic in seed. */
void iemb_class_batch(uint32_t seed, uint32_t n, uint32_t k, uint32_t c, uint32_t *x, int32_t *y);
#endif
