/* The engine from a .bnz pack and from a runtime image, against the same model from its GGUF on
 * the kernel path this CPU (or qemu's CPU model) selects: a pack restores its GGUF byte for byte,
 * a model from the pack or from its image gives bit-identical logits, and a flipped byte in the
 * pack is refused naming the chunk. Runs the 1-bit (repacked on neon/avx2), ternary, Q8_0 and F32
 * fixtures. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <unistd.h>
#include "model_harness.h"
#include "pack/bnz.h"

static const int32_t TOKENS[] = {1, 300, 301, 302, 303};
#define N_TOKENS 5

/* The last token's logits of path loaded with p (NULL: defaults); n_vocab receives their count. */
static float *logits_of(const char *path, const bn_model_params *p, int *n_vocab, bn_image_state *state) {
    char err[512];
    bn_model *m = NULL;
    if (bn_model_load(path, p, &m, err, sizeof err)) {
        fprintf(stderr, "load %s: %s\n", path, err);
        exit(1);
    }
    const char *note;
    *state = bn_model_image_state(m, &note);
    *n_vocab = bn_model_hparams(m)->n_vocab;
    bn_context *c = new_ctx(m, 32, BN_KV_F32, 2);
    float *out = malloc((size_t)*n_vocab * sizeof *out);
    CHECK(out && bn_context_eval(c, TOKENS, N_TOKENS, out, 0, err, sizeof err) == 0, "eval %s: %s", path, err);
    bn_context_free(c);
    bn_model_free(m);
    return out;
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    for (int ca = 0, cb = 0; same && ca != EOF; ) {
        ca = fgetc(fa);
        cb = fgetc(fb);
        same = ca == cb;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void check_model(const char *rel, const char *dir) {
    char gguf[4096], bnz[4200], back[4200], image[4200], err[512];
    snprintf(gguf, sizeof gguf, "%s", bn_fixture(rel));
    snprintf(bnz, sizeof bnz, "%s/m.bnz", dir);
    snprintf(back, sizeof back, "%s/m.gguf", dir);
    snprintf(image, sizeof image, "%s/m.img", dir);
    CHECK(bn_pack_write(gguf, bnz, 2, 2, NULL, NULL, NULL, err, sizeof err) == 0, "pack %s: %s", rel, err);
    bn_pack *p = NULL;
    CHECK(bn_pack_open(bnz, &p, err, sizeof err) == 0, "open: %s", err);
    CHECK(p && bn_pack_unpack(p, back, 2, NULL, NULL, err, sizeof err) == 0, "unpack: %s", err);
    bn_pack_close(p);
    CHECK(same_file(gguf, back), "%s: unpacked file differs", rel);

    int n_vocab = 0, n = 0;
    bn_image_state state;
    float *want = logits_of(gguf, NULL, &n_vocab, &state);
    float *from_pack = logits_of(bnz, NULL, &n, &state);
    CHECK(n == n_vocab && memcmp(want, from_pack, (size_t)n * sizeof *want) == 0, "%s: logits from the pack differ", rel);
    const bn_model_params with_image = {.image = image, .image_key = "test"};
    unlink(image);
    float *built = logits_of(bnz, &with_image, &n, &state);
    CHECK(state == BN_IMAGE_WRITTEN, "%s: image state %d, expected written", rel, (int)state);
    float *mapped = logits_of(bnz, &with_image, &n, &state);
    CHECK(state == BN_IMAGE_USED, "%s: image state %d, expected used", rel, (int)state);
    CHECK(memcmp(want, built, (size_t)n * sizeof *want) == 0 && memcmp(want, mapped, (size_t)n * sizeof *want) == 0,
          "%s: logits from the image differ", rel);
    free(want);
    free(from_pack);
    free(built);
    free(mapped);
    unlink(image);
    unlink(back);
}

/* One byte flipped near the end (the last tensor's last chunk): opening still works (the table is
 * intact), loading names the chunk. */
static void check_damaged(const char *dir) {
    char bnz[4200], err[512];
    snprintf(bnz, sizeof bnz, "%s/m.bnz", dir);
    FILE *f = fopen(bnz, "r+b");
    CHECK(f && fseek(f, -100, SEEK_END) == 0, "open %s", bnz);
    if (!f) return;
    int c = fgetc(f);
    fseek(f, -100, SEEK_END);
    fputc(c ^ 0x10, f);
    fclose(f);
    bn_model *m = NULL;
    CHECK(bn_model_load(bnz, NULL, &m, err, sizeof err) != 0 && strstr(err, "is damaged") && strstr(err, "chunk "),
          "a damaged pack loaded or was refused without naming the chunk: %s", err);
    bn_model_free(m);
    unlink(bnz);
}

int main(void) {
    char dir[] = "/tmp/bonsai-pack-model-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    static const char *models[] = {
        "qwen3-tiny/models/tiny-qwen3-q1_0.gguf", "qwen3-tiny/models/tiny-qwen3-tq1_0.gguf",
        "qwen3-tiny/models/tiny-qwen3-tq2_0.gguf", "qwen3-tiny/models/tiny-qwen3-q8_0.gguf",
        "stories260K/stories260K.gguf",
    };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) check_model(models[i], dir);
    check_damaged(dir);
    rmdir(dir);
    return bn_test_done("test_pack_model");
}
