/* Order-0 byte rANS with interleaved states (see rans.h for the stream layout).
 *
 * The coder follows Duda's range variant of ANS with byte-wise renormalization: a state x lives
 * in [L, 256 L); coding symbol s of frequency f (out of M = 2^12) maps x to
 * (x / f) * M + start(s) + x % f, and decoding inverts that from the slot x % M.
 *
 * Frequency table layout (runs out of order or range, and frequencies that do not sum to the
 * scale, are refused):
 *   runs - 1 (u8), then per run of consecutive present symbols: first symbol (u8), length - 1
 *   (u8), runs in increasing order and not touching; then the frequency of every present symbol
 *   but the last, in symbol order, as one byte (1..127) or two (0x80 | f >> 8, f & 0xff); the
 *   last one's is the rest of the scale. */
#include <string.h>
#include "pack/rans.h"
#include "core/common.h"

#define SCALE_BITS BN_RANS_SCALE_BITS
#define SCALE (1u << SCALE_BITS)
#define SLOT_MASK (SCALE - 1)
#define STATES BN_RANS_STATES
#define RANS_L (1u << 23) /* the low end of a state's range; states stay below RANS_L << 8 */
#define STATE_BYTES (4 * STATES)

/* ---- frequencies ---- */

/* Scales the counts of the n symbols to frequencies that sum to SCALE, every present symbol at
 * least 1. Rounds to nearest, then settles the difference one unit at a time where it costs the
 * fewest bits: a unit added to symbol s saves about count/freq bits, one taken costs about
 * count/(freq - 1). */
static void normalize(const uint64_t count[256], uint64_t n, uint32_t freq[256]) {
    uint32_t sum = 0;
    for (int s = 0; s < 256; s++) {
        freq[s] = 0;
        if (!count[s]) continue;
        const uint64_t f = (count[s] * SCALE + n / 2) / n;
        freq[s] = f ? (uint32_t)f : 1;
        sum += freq[s];
    }
    while (sum < SCALE) {
        int best = -1;
        for (int s = 0; s < 256; s++)
            if (count[s] && (best < 0 || count[s] * freq[best] > count[best] * freq[s])) best = s;
        freq[best]++;
        sum++;
    }
    while (sum > SCALE) {
        int best = -1;
        for (int s = 0; s < 256; s++)
            if (freq[s] > 1 && (best < 0 || count[s] * (freq[best] - 1) < count[best] * (freq[s] - 1))) best = s;
        freq[best]--;
        sum--;
    }
}

/* ---- table serialization ---- */

/* Writes the table of freq into dst[0..cap); 0 when it does not fit. */
static size_t write_table(const uint32_t freq[256], uint8_t *dst, size_t cap) {
    uint8_t runs[2 * 128];
    size_t n_runs = 0, n_present = 0;
    for (int s = 0; s < 256;) {
        if (!freq[s]) {
            s++;
            continue;
        }
        int e = s;
        while (e < 256 && freq[e]) e++;
        runs[2 * n_runs] = (uint8_t)s;
        runs[2 * n_runs + 1] = (uint8_t)(e - s - 1);
        n_runs++;
        n_present += (size_t)(e - s);
        s = e;
    }
    size_t len = 1 + 2 * n_runs;
    if (len > cap) return 0;
    dst[0] = (uint8_t)(n_runs - 1);
    memcpy(dst + 1, runs, 2 * n_runs);
    size_t written = 0;
    for (int s = 0; s < 256 && written + 1 < n_present; s++) {
        if (!freq[s]) continue;
        written++;
        if (len + 2 > cap) return 0;
        if (freq[s] < 0x80) {
            dst[len++] = (uint8_t)freq[s];
        } else {
            dst[len++] = (uint8_t)(0x80 | freq[s] >> 8);
            dst[len++] = (uint8_t)freq[s];
        }
    }
    return len;
}

/* Reads a table from src[0..len) into freq; *used gets its size. */
static int read_table(const uint8_t *src, size_t len, uint32_t freq[256], size_t *used, char *err,
                      size_t errlen) {
    memset(freq, 0, 256 * sizeof freq[0]);
    *used = 0;
    if (len < 1) return bn_fail(err, errlen, "rANS table missing");
    const size_t n_runs = (size_t)src[0] + 1;
    if (len < 1 + 2 * n_runs) return bn_fail(err, errlen, "rANS table ends inside its %zu symbol runs", n_runs);
    size_t pos = 1 + 2 * n_runs;
    unsigned next_free = 0; /* runs must be increasing and not touch */
    int last = -1;
    for (size_t r = 0; r < n_runs; r++) {
        const unsigned first = src[1 + 2 * r], count = (unsigned)src[2 + 2 * r] + 1;
        if (first < next_free || first + count > 256)
            return bn_fail(err, errlen, "rANS table: symbol run %zu (%u..%u) is out of order or range", r, first,
                           first + count - 1);
        for (unsigned s = first; s < first + count; s++) freq[s] = 1; /* marks presence */
        next_free = first + count + 1;
        last = (int)(first + count - 1);
    }
    uint32_t sum = 0;
    for (int s = 0; s < last; s++) {
        if (!freq[s]) continue;
        if (pos >= len) return bn_fail(err, errlen, "rANS table ends inside its frequencies");
        uint32_t f = src[pos++];
        if (f & 0x80) {
            if (pos >= len) return bn_fail(err, errlen, "rANS table ends inside its frequencies");
            f = (f & 0x7f) << 8 | src[pos++];
        }
        if (f == 0) return bn_fail(err, errlen, "rANS table: symbol %d has frequency 0", s);
        sum += f;
        if (sum >= SCALE) return bn_fail(err, errlen, "rANS table: frequencies exceed %u", SCALE);
        freq[s] = f;
    }
    freq[last] = SCALE - sum;
    *used = pos;
    return 0;
}

/* ---- encoder ---- */

static void store_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* What the encoder needs of a symbol. x / freq comes from a multiplication: with
 * s = ceil(log2 freq) and rcp = ceil(2^(31 + s) / freq), (x * rcp) >> (31 + s) is exactly
 * x / freq for every x < 2^31 (the rounding error of rcp adds less than x / 2^(31 + s) < 2^-s
 * <= 1 / freq, too little to reach the next multiple), and rcp fits 32 bits. */
typedef struct enc_symbol {
    uint32_t limit;  /* states at or above this emit bytes before coding the symbol */
    uint32_t rcp, shift;
    uint32_t start, cmpl; /* cmpl = SCALE - freq: x -> x + start + (x / freq) * cmpl */
} enc_symbol;

static void enc_symbols(const uint32_t freq[256], enc_symbol sym[256]) {
    uint32_t start = 0;
    for (int s = 0; s < 256; s++) {
        const uint32_t f = freq[s];
        uint32_t bits = 0;
        while (bits < SCALE_BITS && (1u << bits) < f) bits++;
        sym[s] = (enc_symbol){((RANS_L >> SCALE_BITS) << 8) * f, 0, 31 + bits, start, SCALE - f};
        if (f) sym[s].rcp = (uint32_t)((((uint64_t)1 << (31 + bits)) + f - 1) / f);
        start += f;
    }
}

/* Codes one symbol into state x: first the 0, 1 or 2 low bytes that keep the result in range
 * go out backwards at *p (two are always written, without branches; *p - 2 must be writable),
 * then the state maps to its successor. */
static inline uint32_t encode_symbol(uint32_t x, const enc_symbol *e, uint8_t **p) {
    const uint32_t out = (uint32_t)(x >= e->limit) + (uint32_t)((uint64_t)x >= (uint64_t)e->limit << 8);
    (*p)[-1] = (uint8_t)x;
    (*p)[-2] = (uint8_t)(x >> 8);
    *p -= out;
    x >>= 8 * out;
    const uint32_t q = (uint32_t)(((uint64_t)x * e->rcp) >> e->shift);
    return x + e->start + q * e->cmpl;
}

size_t bn_rans_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, size_t *table_len) {
    if (n == 0) return 0;
    uint64_t count[256] = {0};
    for (size_t i = 0; i < n; i++) count[src[i]]++;
    uint32_t freq[256];
    normalize(count, n, freq);
    const size_t table = write_table(freq, dst, cap);
    if (table == 0) return 0;
    enc_symbol sym[256];
    enc_symbols(freq, sym);

    /* Symbols go in backwards and their bytes are written backwards from the end of dst, so
     * that the decoder reads both forwards: first the partial round at the end, then whole
     * rounds. */
    uint32_t x[STATES];
    for (int k = 0; k < STATES; k++) x[k] = RANS_L;
    uint8_t *p = dst + cap;
    const uint8_t *floor = dst + table;
    size_t i = n;
    for (; i % STATES; i--) {
        if (p - floor < 2) return 0;
        x[(i - 1) % STATES] = encode_symbol(x[(i - 1) % STATES], &sym[src[i - 1]], &p);
    }
    for (; i; i -= STATES) {
        if (p - floor < 2 * STATES) return 0;
        for (int k = STATES; k-- > 0;) x[k] = encode_symbol(x[k], &sym[src[i - STATES + (size_t)k]], &p);
    }
    if (p - floor < STATE_BYTES) return 0;
    for (int k = STATES; k-- > 0;) {
        p -= 4;
        store_le32(p, x[k]);
    }
    const size_t body = (size_t)(dst + cap - p);
    memmove(dst + table, p, body);
    *table_len = table;
    return table + body;
}

/* ---- decoder ---- */

int bn_rans_decoder_init(bn_rans_decoder *d, const uint8_t *src, size_t len, char *err, size_t errlen) {
    uint32_t freq[256];
    size_t table;
    if (read_table(src, len, freq, &table, err, errlen)) return -1;
    if (len - table < STATE_BYTES) return bn_fail(err, errlen, "rANS stream ends inside its states");
    uint32_t cum = 0;
    for (int s = 0; s < 256; s++) {
        d->sym_info[s] = freq[s] | cum << 16;
        memset(d->slot_sym + cum, s, freq[s]);
        cum += freq[s];
    }
    const uint8_t *p = src + table;
    for (int k = 0; k < STATES; k++, p += 4) {
        d->x[k] = load_le32(p);
        if (d->x[k] < RANS_L || d->x[k] >= RANS_L << 8)
            return bn_fail(err, errlen, "rANS state %d (0x%08x) is out of range", k, (unsigned)d->x[k]);
    }
    d->p = p;
    d->end = src + len;
    d->pos = 0;
    return 0;
}

/* One symbol out of state x: writes it, returns the state before renormalization. With a table
 * that sums to SCALE and x in [L, 256 L) the result is in [2^11, 256 L): at most two bytes
 * refill it. */
static inline uint32_t decode_symbol(const bn_rans_decoder *d, uint32_t x, uint8_t *out) {
    const uint32_t slot = x & SLOT_MASK;
    const uint8_t s = d->slot_sym[slot];
    const uint32_t info = d->sym_info[s];
    *out = s;
    return (info & 0xffff) * (x >> SCALE_BITS) + slot - (info >> 16);
}

/* Refills x with the 0, 1 or 2 bytes it needs, without branches; p[0] and p[1] must be
 * readable. */
static inline uint32_t refill_unchecked(uint32_t x, const uint8_t **p) {
    const uint32_t need = (uint32_t)(x < RANS_L) + (uint32_t)(x < (RANS_L >> 8));
    const uint32_t next2 = (uint32_t)(*p)[0] << 8 | (*p)[1];
    *p += need;
    return x << (8 * need) | next2 >> (16 - 8 * need);
}

static inline int refill_checked(uint32_t *x, const uint8_t **p, const uint8_t *end) {
    while (*x < RANS_L) {
        if (*p == end) return -1;
        *x = *x << 8 | *(*p)++;
    }
    return 0;
}

/* Decodes the symbol of the next state, one at a time, checking every byte it reads. */
static int decode_checked(bn_rans_decoder *d, uint8_t *out) {
    uint32_t *x = &d->x[d->pos % STATES];
    *x = decode_symbol(d, *x, out);
    d->pos++;
    return refill_checked(x, &d->p, d->end);
}

int bn_rans_decode(bn_rans_decoder *d, uint8_t *out, size_t n, char *err, size_t errlen) {
    size_t i = 0;
    /* The rest of a round begun by the previous call. */
    for (; i < n && d->pos % STATES; i++)
        if (decode_checked(d, &out[i])) return bn_fail(err, errlen, "rANS data ends early");
    /* Whole rounds while every state's refill is sure to find its two bytes. */
    uint32_t x[STATES];
    memcpy(x, d->x, sizeof x);
    const uint8_t *p = d->p;
    const size_t first = i;
    for (; n - i >= STATES && (size_t)(d->end - p) >= 2 * STATES; i += STATES) {
        for (int k = 0; k < STATES; k++) x[k] = decode_symbol(d, x[k], &out[i + (size_t)k]);
        for (int k = 0; k < STATES; k++) x[k] = refill_unchecked(x[k], &p);
    }
    memcpy(d->x, x, sizeof x);
    d->p = p;
    d->pos += i - first;
    /* The tail, and rounds near the end of the input. */
    for (; i < n; i++)
        if (decode_checked(d, &out[i])) return bn_fail(err, errlen, "rANS data ends early");
    return 0;
}

int bn_rans_decoder_finish(const bn_rans_decoder *d, char *err, size_t errlen) {
    if (d->p != d->end) return bn_fail(err, errlen, "rANS stream has %zu bytes left over", (size_t)(d->end - d->p));
    for (int k = 0; k < STATES; k++)
        if (d->x[k] != RANS_L) return bn_fail(err, errlen, "rANS state %d does not end where encoding began", k);
    return 0;
}
