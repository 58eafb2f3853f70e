// ggufRead(file): a GGUF file's header, metadata and tensor table as JavaScript values, for
// `bonsai inspect` and the tokenizer; of a .bnz pack, those of the GGUF inside it, plus `pack`.
// Parsing and validation are the C readers' (gguf/gguf.c, pack/bnz.c).
#include <napi.h>

#include <cstring>
#include <string>

#include "napi/addon.h"

extern "C" {
#include "gguf/gguf.h"
#include "pack/bnz.h"
#include "quants/quants.h"
}

namespace bonsai {
namespace {

Napi::Value U64Value(Napi::Env env, uint64_t v) {
    if (v <= kMaxSafeInteger) return Napi::Number::New(env, static_cast<double>(v));
    return Napi::BigInt::New(env, v);
}

Napi::Value I64Value(Napi::Env env, int64_t v) {
    if (v >= -static_cast<int64_t>(kMaxSafeInteger) && v <= static_cast<int64_t>(kMaxSafeInteger)) {
        return Napi::Number::New(env, static_cast<double>(v));
    }
    return Napi::BigInt::New(env, v);
}

Napi::String StrValue(Napi::Env env, bn_str s) {
    return Napi::String::New(env, s.ptr ? s.ptr : "", static_cast<size_t>(s.len));
}

// Numeric arrays are copied into a fresh typed array (the data in the file may be unaligned).
Napi::Value NumericArray(Napi::Env env, const bn_gguf_kv &kv) {
    static const struct { uint32_t type; size_t size; napi_typedarray_type js; } kinds[] = {
        {BN_GGUF_U8, 1, napi_uint8_array},     {BN_GGUF_I8, 1, napi_int8_array},
        {BN_GGUF_U16, 2, napi_uint16_array},   {BN_GGUF_I16, 2, napi_int16_array},
        {BN_GGUF_U32, 4, napi_uint32_array},   {BN_GGUF_I32, 4, napi_int32_array},
        {BN_GGUF_F32, 4, napi_float32_array},  {BN_GGUF_F64, 8, napi_float64_array},
        {BN_GGUF_U64, 8, napi_biguint64_array}, {BN_GGUF_I64, 8, napi_bigint64_array},
    };
    for (const auto &k : kinds) {
        if (k.type != kv.arr_type) continue;
        size_t bytes = static_cast<size_t>(kv.arr_count) * k.size;
        auto buf = Napi::ArrayBuffer::New(env, bytes);
        if (bytes) std::memcpy(buf.Data(), kv.arr_data, bytes);
        napi_value array;
        NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, k.js, static_cast<size_t>(kv.arr_count), buf, 0, &array),
                             Napi::Value());
        return Napi::Value(env, array);
    }
    return env.Undefined();
}

// A vocabulary's tokens and merges are ~150k strings each: one UTF-8 decode of them all, joined
// by NUL, and one String.prototype.split take a fraction of the time of a call per string. NUL
// is valid UTF-8 though, so an array with a NUL inside a string is built string by string.
Napi::Value StringArray(Napi::Env env, const bn_gguf_kv &kv) {
    size_t total = 0;
    bool has_nul = false;
    for (uint64_t i = 0; i < kv.arr_count && !has_nul; i++) {
        const bn_str &s = kv.arr_strs[i];
        total += static_cast<size_t>(s.len) + 1;
        has_nul = s.len > 0 && std::memchr(s.ptr, 0, static_cast<size_t>(s.len)) != nullptr;
    }
    if (has_nul || kv.arr_count == 0) {
        auto arr = Napi::Array::New(env, static_cast<size_t>(kv.arr_count));
        for (uint64_t i = 0; i < kv.arr_count; i++) arr.Set(static_cast<uint32_t>(i), StrValue(env, kv.arr_strs[i]));
        return arr;
    }
    std::string joined;
    joined.reserve(total);
    for (uint64_t i = 0; i < kv.arr_count; i++) {
        if (i > 0) joined.push_back('\0');
        if (kv.arr_strs[i].len > 0) joined.append(kv.arr_strs[i].ptr, static_cast<size_t>(kv.arr_strs[i].len));
    }
    auto all = Napi::String::New(env, joined);
    return all.ToObject().Get("split").As<Napi::Function>().Call(all, {Napi::String::New(env, std::string(1, '\0'))});
}

Napi::Value ArrayValue(Napi::Env env, const bn_gguf_kv &kv) {
    if (kv.arr_type == BN_GGUF_STRING) return StringArray(env, kv);
    if (kv.arr_type == BN_GGUF_BOOL) {
        auto arr = Napi::Array::New(env, static_cast<size_t>(kv.arr_count));
        for (uint64_t i = 0; i < kv.arr_count; i++) arr.Set(static_cast<uint32_t>(i), Napi::Boolean::New(env, kv.arr_data[i] != 0));
        return arr;
    }
    return NumericArray(env, kv);
}

Napi::Value KvValue(Napi::Env env, const bn_gguf_kv &kv) {
    switch (kv.type) {
        case BN_GGUF_U8: case BN_GGUF_U16: case BN_GGUF_U32: case BN_GGUF_U64:
            return U64Value(env, kv.v.u64);
        case BN_GGUF_I8: case BN_GGUF_I16: case BN_GGUF_I32: case BN_GGUF_I64:
            return I64Value(env, kv.v.i64);
        case BN_GGUF_F32: case BN_GGUF_F64:
            return Napi::Number::New(env, kv.v.f64);
        case BN_GGUF_BOOL:
            return Napi::Boolean::New(env, kv.v.u64 != 0);
        case BN_GGUF_STRING:
            return StrValue(env, kv.v.str);
        case BN_GGUF_ARRAY:
            return ArrayValue(env, kv);
        default:
            return env.Undefined();
    }
}

std::string KvTypeName(const bn_gguf_kv &kv) {
    if (kv.type != BN_GGUF_ARRAY) return bn_gguf_vtype_name(kv.type);
    return std::string("array<") + bn_gguf_vtype_name(kv.arr_type) + ">";
}

Napi::Object TensorInfo(Napi::Env env, const bn_gguf_tensor &t) {
    auto o = Napi::Object::New(env);
    o.Set("name", StrValue(env, t.name));
    o.Set("type", Napi::Number::New(env, t.type));
    const bn_type_traits *traits = bn_type_get(t.type);
    o.Set("typeName", Napi::String::New(env, traits ? traits->name : "unknown"));
    auto dims = Napi::Array::New(env, t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; d++) dims.Set(d, Napi::Number::New(env, static_cast<double>(t.ne[d])));
    o.Set("dims", dims);
    o.Set("offset", Napi::Number::New(env, static_cast<double>(t.offset)));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(t.n_bytes)));
    return o;
}

}  // namespace

Napi::Value GgufRead(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "ggufRead(file): file must be a string");
    std::string path = info[0].As<Napi::String>();
    char err[kErrLen] = {0};
    bn_gguf *g = nullptr;
    bn_pack *pack = nullptr;
    if (bn_pack_is_pack(path.c_str())) {
        if (bn_pack_open(path.c_str(), &pack, err, sizeof err) != 0) throw Napi::Error::New(env, err);
        g = bn_pack_gguf(pack);
    } else if (bn_gguf_open(path.c_str(), &g, err, sizeof err) != 0) {
        throw Napi::Error::New(env, err);
    }

    auto out = Napi::Object::New(env);
    out.Set("version", Napi::Number::New(env, g->version));
    out.Set("alignment", Napi::Number::New(env, static_cast<double>(g->alignment)));
    out.Set("dataOffset", Napi::Number::New(env, static_cast<double>(g->data_offset)));
    out.Set("fileSize", Napi::Number::New(env, static_cast<double>(g->file_size)));
    auto metadata = Napi::Object::New(env);
    auto types = Napi::Object::New(env);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const bn_gguf_kv &kv = g->kv[i];
        std::string key(kv.key.ptr, static_cast<size_t>(kv.key.len));
        metadata.Set(key, KvValue(env, kv));
        types.Set(key, KvTypeName(kv));
    }
    out.Set("metadata", metadata);
    out.Set("metadataTypes", types);
    auto tensors = Napi::Array::New(env, static_cast<size_t>(g->n_tensors));
    for (uint64_t i = 0; i < g->n_tensors; i++) tensors.Set(static_cast<uint32_t>(i), TensorInfo(env, g->tensors[i]));
    out.Set("tensors", tensors);
    if (pack) {
        auto p = Napi::Object::New(env);
        p.Set("identity", Napi::Number::New(env, bn_pack_identity(pack)));
        p.Set("chunks", Napi::Number::New(env, bn_pack_chunk_count(pack)));
        p.Set("bytes", Napi::Number::New(env, static_cast<double>(bn_pack_bytes(pack))));
        out.Set("pack", p);
        bn_pack_close(pack);
    } else {
        bn_gguf_close(g);
    }
    return out;
}

}  // namespace bonsai
