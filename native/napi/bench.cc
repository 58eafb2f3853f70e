// What `bonsai bench`, `bonsai inspect` and `bonsai profile` ask about this machine: its kernel
// paths, its page size, its memory bandwidth and the speed of one kernel. Synchronous: the bench
// calls them when nothing else runs.
#include <napi.h>

#include <string>

#include "napi/addon.h"

extern "C" {
#include "core/common.h"
#include "kernels/kernels.h"
#include "quants/quants.h"
#include "tools/kernel_bench.h"
#include "tools/membw.h"
}

namespace bonsai {
namespace {

std::string KernelsLabel(uint32_t type, bn_isa isa) {
    char label[64];
    bn_kernels_label(type, isa, label, sizeof label);
    return label;
}

}  // namespace

Napi::Value KernelPaths(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto supported = Napi::Array::New(env);
    uint32_t n = 0;
    for (int isa = 0; isa < BN_ISA_COUNT; isa++) {
        if (bn_isa_supported(static_cast<bn_isa>(isa))) supported.Set(n++, bn_isa_name(static_cast<bn_isa>(isa)));
    }
    auto out = Napi::Object::New(env);
    out.Set("supported", supported);
    bn_isa selected;
    char err[kErrLen] = {0};
    if (bn_isa_select(&selected, err, sizeof err) != 0) throw Napi::Error::New(env, err);
    out.Set("selected", bn_isa_name(selected));
    // for the weight type asked about; Q1_0, the weights this engine is for, by default
    uint32_t type = BN_TYPE_Q1_0;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
        if (!info[0].IsString()) throw Napi::TypeError::New(env, "kernelPaths(type?): type must be a string");
        const std::string name = info[0].As<Napi::String>().Utf8Value();
        if (bn_type_from_name(name.c_str(), &type) != 0) throw Napi::Error::New(env, "kernelPaths: unknown type " + name);
    }
    out.Set("selectedLabel", KernelsLabel(type, selected));
    return out;
}

Napi::Value PageSize(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), static_cast<double>(bn_page_size()));
}

Napi::Value MemoryBandwidth(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
        throw Napi::TypeError::New(env, "memoryBandwidth(bytes, threads, reps): numbers expected");
    }
    const double bytes = info[0].As<Napi::Number>().DoubleValue();
    if (!(bytes >= 0 && bytes <= static_cast<double>(kMaxSafeInteger))) throw Napi::RangeError::New(env, "bytes out of range");
    bn_membw_result r = {};
    char err[kErrLen] = {0};
    if (bn_membw_measure(static_cast<size_t>(bytes), info[1].As<Napi::Number>().Int32Value(),
                         info[2].As<Napi::Number>().Int32Value(), &r, err, sizeof err) != 0) {
        throw Napi::Error::New(env, err);
    }
    auto out = Napi::Object::New(env);
    out.Set("bestGBps", Napi::Number::New(env, r.best_gbps));
    out.Set("meanGBps", Napi::Number::New(env, r.mean_gbps));
    return out;
}

Napi::Value KernelBench(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "kernelBench(spec): an object expected");
    Napi::Object o = info[0].As<Napi::Object>();
    const std::string type = o.Get("type").ToString(), path = o.Get("path").ToString();
    bn_kernel_bench_spec s = {};
    if (bn_type_from_name(type.c_str(), &s.type) != 0) throw Napi::Error::New(env, "kernelBench: unknown weight type " + type);
    if (bn_isa_from_name(path.c_str(), &s.isa) != 0) throw Napi::Error::New(env, "kernelBench: unknown kernel path " + path);
    s.rows = o.Get("rows").ToNumber().Int64Value();
    s.cols = o.Get("cols").ToNumber().Int64Value();
    s.batch = o.Get("batch").ToNumber().Int32Value();
    s.threads = o.Get("threads").ToNumber().Int32Value();
    s.min_ms = o.Get("minMs").ToNumber().DoubleValue();
    s.stream_bytes = static_cast<size_t>(o.Get("streamBytes").ToNumber().Int64Value());
    bn_kernel_bench_result r = {};
    char err[kErrLen] = {0};
    if (bn_kernel_bench(&s, &r, err, sizeof err) != 0) throw Napi::Error::New(env, err);
    auto out = Napi::Object::New(env);
    out.Set("bestMs", r.best_ms);
    out.Set("gbps", r.gbps);
    out.Set("nsPerBlock", r.ns_per_block);
    out.Set("packMs", r.pack_ms);
    out.Set("packedBytes", static_cast<double>(r.packed_bytes));
    out.Set("iterations", r.iterations);
    out.Set("kernelsLabel", KernelsLabel(s.type, s.isa));
    return out;
}

}  // namespace bonsai
