// NativeContext.
#include "napi/context.h"

#include <cstring>
#include <string>
#include <vector>

#include "napi/addon.h"
#include "napi/workers.h"

namespace bonsai {
namespace {

// Every field is required: the defaults live in one place, on the TypeScript side.
bn_sampler_params SamplerParams(const Napi::Object &s) {
    const char *what = "generate(options): sampling";
    bn_sampler_params p = {};
    p.temperature = static_cast<float>(RequiredNumber(s, "temperature", what).DoubleValue());
    p.top_k = RequiredNumber(s, "topK", what).Int32Value();
    p.top_p = static_cast<float>(RequiredNumber(s, "topP", what).DoubleValue());
    p.min_p = static_cast<float>(RequiredNumber(s, "minP", what).DoubleValue());
    p.repeat_penalty = static_cast<float>(RequiredNumber(s, "repeatPenalty", what).DoubleValue());
    p.repeat_last_n = RequiredNumber(s, "repeatLastN", what).Int32Value();
    p.seed = static_cast<uint64_t>(RequiredNumber(s, "seed", what).DoubleValue());
    return p;
}

}  // namespace

Napi::FunctionReference Context::constructor;

void Context::Init(Napi::Env env) {
    Napi::Function fn = DefineClass(env, "NativeContext", {
        InstanceAccessor("nCtx", &Context::NCtx, nullptr),
        InstanceAccessor("nPast", &Context::NPast, nullptr),
        InstanceMethod("eval", &Context::Eval),
        InstanceMethod("generate", &Context::Generate),
        InstanceMethod("cancel", &Context::Cancel),
        InstanceMethod("truncate", &Context::Truncate),
        InstanceMethod("setThreads", &Context::SetThreads),
        InstanceMethod("limitThreads", &Context::LimitThreads),
        InstanceMethod("pause", &Context::Pause),
        InstanceMethod("tokens", &Context::TokensList),
        InstanceMethod("kvBytes", &Context::KvBytes),
        InstanceMethod("kvExport", &Context::KvExport),
        InstanceMethod("kvImport", &Context::KvImport),
        InstanceMethod("setDrafter", &Context::SetDrafter),
        InstanceMethod("close", &Context::Close),
    });
    constructor = Napi::Persistent(fn);
}

Context::Context(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Context>(info) {
    Napi::Env env = info.Env();
    model_ = Napi::ObjectWrap<Model>::Unwrap(info[0].As<Napi::Object>());
    modelRef_ = Napi::Persistent(info[0].As<Napi::Object>());
    Napi::Object o = info[1].As<Napi::Object>();
    bn_context_params p = {};
    p.n_ctx = IntOption(o, "nCtx", 0);
    Napi::Value kv = o.Get("kvType");
    p.kv_type = kv.IsString() && kv.As<Napi::String>().Utf8Value() == "f16" ? BN_KV_F16 : BN_KV_F32;
    p.n_threads = IntOption(o, "threads", 1);
    Napi::Value with = o.Get("batchWith");
    if (!with.IsUndefined()) {
        if (!with.IsObject() || !with.As<Napi::Object>().InstanceOf(constructor.Value())) {
            throw Napi::TypeError::New(env, "createContext(options): batchWith must be a NativeContext");
        }
        p.batch_with = Napi::ObjectWrap<Context>::Unwrap(with.As<Napi::Object>())->Idle(env);
    }
    char err[kErrLen] = {0};
    if (bn_context_new(model_->Get(env), &p, &ctx_, err, sizeof err) != 0) throw Napi::Error::New(env, err);
    model_->AddContext();
}

void Context::Truncate(const Napi::CallbackInfo &info) {
    bn_context *c = Idle(info.Env());
    bn_context_truncate(c, info[0].As<Napi::Number>().Int32Value());
}

void Context::SetThreads(const Napi::CallbackInfo &info) {
    bn_context *c = Idle(info.Env());
    bn_context_set_threads(c, info[0].As<Napi::Number>().Int32Value());
}

void Context::LimitThreads(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const int32_t n = IntArgument(env, info[0], "limitThreads(n): n");
    if (n < 1) throw Napi::RangeError::New(env, "limitThreads(n): n must be at least 1");
    bn_context_limit_threads(Open(env), n);
}

void Context::Pause(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsBoolean()) throw Napi::TypeError::New(env, "pause(paused): paused must be a boolean");
    bn_context_pause(Open(env), info[0].As<Napi::Boolean>().Value());
}

Napi::Value Context::TokensList(const Napi::CallbackInfo &info) {
    bn_context *c = Idle(info.Env());
    int n = bn_context_n_past(c);
    auto out = Napi::Int32Array::New(info.Env(), static_cast<size_t>(n));
    if (n) std::memcpy(out.Data(), bn_context_tokens(c), sizeof(int32_t) * static_cast<size_t>(n));
    return out;
}

Napi::Value Context::KvBytes(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bn_context *c = Open(env);
    const int32_t n = IntArgument(env, info[0], "kvBytes(nTokens): nTokens");
    const size_t bytes = bn_context_kv_bytes(c, n);
    if (bytes == 0 && n != 0) {
        throw Napi::RangeError::New(env, "kvBytes(nTokens): nTokens " + std::to_string(n) + " is outside [0, " +
                                             std::to_string(bn_context_n_ctx(c)) + "]");
    }
    return Napi::Number::New(env, static_cast<double>(bytes));
}

Napi::Value Context::KvExport(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const int32_t pos = IntArgument(env, info[0], "kvExport(pos, n): pos");
    const int32_t n = IntArgument(env, info[1], "kvExport(pos, n): n");
    bn_context *c = Idle(env);
    // 0 bytes when n is out of range, which the export then refuses
    auto out = Napi::Buffer<uint8_t>::New(env, bn_context_kv_bytes(c, n));
    char err[kErrLen] = {0};
    if (bn_context_kv_export(c, pos, n, out.Data(), out.Length(), err, sizeof err) != 0) {
        throw Napi::RangeError::New(env, std::string("kvExport(pos, n): ") + err);
    }
    return out;
}

void Context::KvImport(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::vector<int32_t> tokens = Tokens(env, info[0], "kvImport(tokens, data): tokens");
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw Napi::TypeError::New(env, "kvImport(tokens, data): data must be a Buffer or Uint8Array");
    }
    if (tokens.size() > static_cast<size_t>(INT32_MAX)) {
        throw Napi::RangeError::New(env, "kvImport(tokens, data): too many tokens");
    }
    auto data = info[1].As<Napi::Uint8Array>();
    bn_context *c = Idle(env);
    char err[kErrLen] = {0};
    if (bn_context_kv_import(c, tokens.data(), static_cast<int>(tokens.size()), data.Data(), data.ByteLength(), err,
                             sizeof err) != 0) {
        throw Napi::RangeError::New(env, std::string("kvImport(tokens, data): ") + err);
    }
}

void Context::SetDrafter(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bn_context *c = Idle(env);
    Context *drafter = nullptr;
    if (!info[0].IsNull()) {
        if (!info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(constructor.Value())) {
            throw Napi::TypeError::New(env, "setDrafter(context): a NativeContext or null");
        }
        drafter = Napi::ObjectWrap<Context>::Unwrap(info[0].As<Napi::Object>());
        drafter->Idle(env);
        if (drafter->draftsFor_ && drafter->draftsFor_ != this) {
            throw Napi::Error::New(env, "setDrafter(context): that context drafts for another one already");
        }
    }
    char err[kErrLen] = {0};
    if (bn_context_set_drafter(c, drafter ? drafter->ctx_ : nullptr, err, sizeof err) != 0) {
        throw Napi::Error::New(env, std::string("setDrafter(context): ") + err);
    }
    Detach();
    if (drafter) {
        drafter_ = drafter;
        drafter->draftsFor_ = this;
        drafterRef_ = Napi::Persistent(info[0].As<Napi::Object>());
    }
}

// Forgets the drafter on this side (the C context is told by the caller, or freed).
void Context::Detach() {
    if (!drafter_) return;
    drafter_->draftsFor_ = nullptr;
    drafter_ = nullptr;
    drafterRef_.Reset();
}

void Context::Close(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Idle(env);
    if (draftsFor_) throw Napi::Error::New(env, "this context drafts for another: close that one first");
    Free();
}

void Context::Free() {
    if (!ctx_) return;
    Detach();
    if (draftsFor_) { // finalized together with the context it drafts for, in either order
        if (draftsFor_->ctx_) bn_context_set_drafter(draftsFor_->ctx_, nullptr, nullptr, 0);
        draftsFor_->drafter_ = nullptr;
        draftsFor_->drafterRef_.Reset();
        draftsFor_ = nullptr;
    }
    bn_context_free(ctx_);
    ctx_ = nullptr;
    model_->RemoveContext();
    modelRef_.Reset();
}

Napi::Value Context::Eval(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::vector<int32_t> tokens = Tokens(env, info[0], "eval(tokens)");
    if (tokens.empty()) throw Napi::Error::New(env, "eval(tokens): no tokens");
    bool all = info[1].ToBoolean();
    Idle(env);
    int vocab = bn_model_hparams(model_->Get(env))->n_vocab;
    auto *w = new EvalWorker(env, this, Value(), std::move(tokens), all, vocab);
    w->Queue();
    return w->Promise();
}

Napi::Value Context::Generate(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::vector<int32_t> prompt = Tokens(env, info[0], "generate(prompt)");
    if (prompt.empty()) throw Napi::Error::New(env, "generate(prompt): the prompt has no tokens");
    if (!info[1].IsObject() || !info[2].IsFunction()) {
        throw Napi::TypeError::New(env, "generate(prompt, options, onToken)");
    }
    Napi::Object o = info[1].As<Napi::Object>();
    int maxTokens = IntOption(o, "maxTokens", 0);
    int draftMax = IntOption(o, "draftMax", 0);
    std::vector<int32_t> stops = o.Get("stopIds").IsUndefined() ? std::vector<int32_t>() : Tokens(env, o.Get("stopIds"), "stopIds");
    if (!o.Get("sampling").IsObject()) throw Napi::TypeError::New(env, "generate(options): sampling must be an object");
    bn_sampler_params sp = SamplerParams(o.Get("sampling").As<Napi::Object>());
    Idle(env);
    bn_sampler *sampler = bn_sampler_new(&sp, bn_model_hparams(model_->Get(env))->n_vocab);
    if (!sampler) throw Napi::Error::New(env, "out of memory creating the sampler");
    auto *w = new GenerateWorker(env, this, Value(), info[2].As<Napi::Function>(), std::move(prompt), maxTokens,
                                 std::move(stops), draftMax, sampler);
    w->Queue();
    return w->Promise();
}

}  // namespace bonsai
