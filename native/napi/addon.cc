// The thin N-API glue between the C engine and JavaScript: this file registers what the others
// define. Anything that runs the model (loading, evaluation, generation) happens in AsyncWorkers
// (workers.cc), never on the JS thread.
#include <napi.h>

#include "napi/addon.h"
#include "napi/context.h"
#include "napi/model.h"

namespace {

using namespace bonsai;

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Model::Init(env);
    Context::Init(env);
    exports.Set("ggufRead", Napi::Function::New(env, GgufRead));
    exports.Set("loadModel", Napi::Function::New(env, LoadModel));
    exports.Set("kernelPaths", Napi::Function::New(env, KernelPaths));
    exports.Set("pageSize", Napi::Function::New(env, PageSize));
    exports.Set("memoryBandwidth", Napi::Function::New(env, MemoryBandwidth));
    exports.Set("kernelBench", Napi::Function::New(env, KernelBench));
    exports.Set("notify", Napi::Function::New(env, Notify));
    exports.Set("cpuAffinity", Napi::Function::New(env, CpuAffinity));
    exports.Set("setCpuAffinity", Napi::Function::New(env, SetCpuAffinity));
    exports.Set("packWrite", Napi::Function::New(env, PackWrite));
    exports.Set("packVerify", Napi::Function::New(env, PackVerify));
    exports.Set("packUnpack", Napi::Function::New(env, PackUnpack));
    DefineTrainer(env, exports);
    return exports;
}

}  // namespace

NODE_API_MODULE(bonsai, Init)
