// cpuAffinity() and setCpuAffinity(cpus): the CPUs this process runs on (core/affinity.c).
#include <napi.h>

#include <vector>

#include "napi/addon.h"

extern "C" {
#include "core/affinity.h"
}

namespace bonsai {

Napi::Value CpuAffinity(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::vector<int> cpus(BN_AFFINITY_MAX_CPUS);
    char err[kErrLen] = {0};
    const int n = bn_affinity_get(cpus.data(), static_cast<int>(cpus.size()), err, sizeof err);
    if (n < 0) throw Napi::Error::New(env, err);
    auto out = Napi::Array::New(env, n);
    for (int i = 0; i < n; i++) out.Set(i, cpus[i]);
    return out;
}

Napi::Value SetCpuAffinity(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "setCpuAffinity(cpus): cpus must be an array of CPU numbers");
    auto given = info[0].As<Napi::Array>();
    std::vector<int> cpus;
    for (uint32_t i = 0; i < given.Length(); i++) cpus.push_back(IntArgument(env, given.Get(i), "setCpuAffinity(cpus): each CPU"));
    char err[kErrLen] = {0};
    const int moved = bn_affinity_set_process(cpus.data(), static_cast<int>(cpus.size()), err, sizeof err);
    if (moved < 0) throw Napi::Error::New(env, err);
    return Napi::Number::New(env, moved);
}

}  // namespace bonsai
