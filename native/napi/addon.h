// What the files of the N-API addon share: limits, readers for arguments that come from
// JavaScript, and the module's free functions (registered by addon.cc). The classes are in
// model.h, context.h and workers.h.
#ifndef BONSAI_NAPI_ADDON_H
#define BONSAI_NAPI_ADDON_H

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace bonsai {

// Room for the engine's error messages.
constexpr size_t kErrLen = 512;
// JS numbers hold integers exactly up to 2^53.
constexpr uint64_t kMaxSafeInteger = (1ULL << 53) - 1;

// o[key] converted as JavaScript's ToInt32 does, or def when it is not a number.
inline int32_t IntOption(const Napi::Object &o, const char *key, int32_t def) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : def;
}

// o[key], which must be a number: the defaults belong to the caller, so a missing field is an
// error (a TypeError "<what>.<key> must be a number"), not a silent second default.
inline Napi::Number RequiredNumber(const Napi::Object &o, const char *key, const char *what) {
    Napi::Value v = o.Get(key);
    if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(what) + "." + key + " must be a number");
    return v.As<Napi::Number>();
}

// An argument that must be an integer of int32 range: a TypeError when it is not a number, a
// RangeError when it is not such an integer; `what` names it ("kvExport(pos, n): pos").
inline int32_t IntArgument(Napi::Env env, const Napi::Value &v, const char *what) {
    if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(what) + " must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d == std::floor(d) && d >= INT32_MIN && d <= INT32_MAX)) {
        throw Napi::RangeError::New(env, std::string(what) + " must be an integer in the int32 range");
    }
    return static_cast<int32_t>(d);
}

// A copy of an Int32Array argument; `what` names it in the TypeError otherwise.
inline std::vector<int32_t> Tokens(Napi::Env env, const Napi::Value &v, const char *what) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw Napi::TypeError::New(env, std::string(what) + " must be an Int32Array");
    }
    auto a = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

// packWrite, packVerify, packUnpack: .bnz jobs (pack.cc).
Napi::Value PackWrite(const Napi::CallbackInfo &info);
Napi::Value PackVerify(const Napi::CallbackInfo &info);
Napi::Value PackUnpack(const Napi::CallbackInfo &info);
// ggufRead(file) (gguf.cc).
Napi::Value GgufRead(const Napi::CallbackInfo &info);
// loadModel(file, options) (model.cc).
Napi::Value LoadModel(const Napi::CallbackInfo &info);
// kernelPaths(), pageSize(), memoryBandwidth(bytes, threads, reps), kernelBench(spec) (bench.cc).
Napi::Value KernelPaths(const Napi::CallbackInfo &info);
Napi::Value PageSize(const Napi::CallbackInfo &info);
Napi::Value MemoryBandwidth(const Napi::CallbackInfo &info);
Napi::Value KernelBench(const Napi::CallbackInfo &info);
// notify(state) (notify.cc).
Napi::Value Notify(const Napi::CallbackInfo &info);
// cpuAffinity(), setCpuAffinity(cpus) (affinity.cc).
Napi::Value CpuAffinity(const Napi::CallbackInfo &info);
Napi::Value SetCpuAffinity(const Napi::CallbackInfo &info);
// exports.Trainer, the distillation trainer (trainer.cc).
void DefineTrainer(Napi::Env env, Napi::Object exports);

}  // namespace bonsai

#endif
