/* GGUF reader (versions 2 and 3). Parses a file image already in memory (normally a read-only
 * mapping) and validates every count, length, type, dimension and offset against its size with
 * overflow-safe arithmetic before use. Strings and tensor data point into the image: nothing is
 * copied. Errors name what is wrong and where, e.g.
 *   "tensor 'blk.3.ffn_up.weight': data ends at byte 123, file has 100". */
#ifndef BN_GGUF_H
#define BN_GGUF_H

#include <stdint.h>
#include <stddef.h>
#include "core/mapped_file.h"

enum bn_gguf_vtype {
    BN_GGUF_U8 = 0, BN_GGUF_I8 = 1, BN_GGUF_U16 = 2, BN_GGUF_I16 = 3, BN_GGUF_U32 = 4,
    BN_GGUF_I32 = 5, BN_GGUF_F32 = 6, BN_GGUF_BOOL = 7, BN_GGUF_STRING = 8, BN_GGUF_ARRAY = 9,
    BN_GGUF_U64 = 10, BN_GGUF_I64 = 11, BN_GGUF_F64 = 12,
};

#define BN_GGUF_MAX_DIMS 4
#define BN_GGUF_DEFAULT_ALIGNMENT 32

/* A string inside the image: not NUL-terminated. */
typedef struct bn_str {
    const char *ptr;
    uint64_t len;
} bn_str;

typedef struct bn_gguf_kv {
    bn_str key;
    uint32_t type;           /* enum bn_gguf_vtype */
    /* Scalars: the value, widened. */
    union {
        uint64_t u64;        /* U8/U16/U32/U64/BOOL */
        int64_t i64;         /* I8/I16/I32/I64 */
        double f64;          /* F32/F64 */
        bn_str str;          /* STRING */
    } v;
    /* Arrays (type == BN_GGUF_ARRAY): element type, count, and the elements. Numeric elements
     * are little-endian and packed at arr_data; string elements are indexed by arr_strs
     * (allocated by the parser). Arrays of arrays are refused. */
    uint32_t arr_type;
    uint64_t arr_count;
    const uint8_t *arr_data;
    bn_str *arr_strs;
} bn_gguf_kv;

typedef struct bn_gguf_tensor {
    bn_str name;
    uint32_t n_dims;
    uint64_t ne[BN_GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims are 1 */
    uint32_t type;                 /* a type bn_type_get() knows (others are refused) */
    uint64_t offset;               /* relative to the data section */
    uint64_t n_elements;
    uint64_t n_bytes;
    const uint8_t *data;           /* absolute pointer into the image */
} bn_gguf_tensor;

typedef struct bn_gguf {
    uint32_t version;
    uint64_t n_kv;
    uint64_t n_tensors;
    bn_gguf_kv *kv;
    bn_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;   /* start of the data section in the image */
    const uint8_t *image;
    uint64_t image_size;
    uint64_t file_size;     /* of the whole file: image_size, or more when only the head was parsed */
    bn_mapped_file *file;   /* set (and owned) when opened with bn_gguf_open */
} bn_gguf;

/* Parses image[0..size). On failure *out is left empty and err says why. */
int bn_gguf_parse(const uint8_t *image, uint64_t size, bn_gguf *out, char *err, size_t errlen);
/* Parses the head of a file (its header, metadata and tensor table: image[0..size)) whose whole
 * length is file_size, as a pack stores it: tensors are checked against file_size, and those that
 * lie beyond the image get data NULL. */
int bn_gguf_parse_head(const uint8_t *image, uint64_t size, uint64_t file_size, bn_gguf *out, char *err,
                       size_t errlen);
/* Maps path read-only and parses it; errors are prefixed with nothing (callers add the path). */
int bn_gguf_open(const char *path, bn_gguf **out, char *err, size_t errlen);
/* Frees what parse allocated (and the mapping if opened from a path). Safe on a zeroed struct. */
void bn_gguf_free(bn_gguf *g);
void bn_gguf_close(bn_gguf *g); /* bn_gguf_free + free(g), for bn_gguf_open results */

const bn_gguf_kv *bn_gguf_find(const bn_gguf *g, const char *key);
const bn_gguf_tensor *bn_gguf_find_tensor(const bn_gguf *g, const char *name);
int bn_str_eq(bn_str s, const char *cstr);

/* Typed getters with a default when the key is absent. A present key of an incompatible type is
 * an error (returns -1 with a message naming the key). Integers of any width convert when the
 * value fits. */
int bn_gguf_get_u32(const bn_gguf *g, const char *key, uint32_t def, uint32_t *out, char *err, size_t errlen);
int bn_gguf_get_f32(const bn_gguf *g, const char *key, float def, float *out, char *err, size_t errlen);
int bn_gguf_get_bool(const bn_gguf *g, const char *key, int def, int *out, char *err, size_t errlen);
/* out->ptr is NULL when absent. */
int bn_gguf_get_str(const bn_gguf *g, const char *key, bn_str *out, char *err, size_t errlen);

const char *bn_gguf_vtype_name(uint32_t type);

#endif
