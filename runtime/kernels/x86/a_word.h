/* Bytes 4g..4g+3 of a row of kb as one little-endian word, zeros past kb (they meet zeros in
 * the packed B): what the reduction-major GEMMs broadcast. Never reads past the row. */
#ifndef IE_A_WORD_H
#define IE_A_WORD_H

#include <stdint.h>
#include <string.h>

static inline uint32_t ie_a_word(const int8_t *row, size_t g, size_t kb) {
    uint32_t w = 0;
    if (4 * g + 4 <= kb) memcpy(&w, row + 4 * g, 4);
    else
        for (size_t t = 0; 4 * g + t < kb; t++) w |= (uint32_t)(uint8_t)row[4 * g + t] << (8 * t);
    return w;
}

#endif
