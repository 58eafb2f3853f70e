// The thin N-API glue between the C engine and JavaScript. Anything that runs the model
// (loading, evaluation, generation) happens in AsyncWorkers, never on the JS thread.
#include <napi.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "engine.h"
#include "gguf.h"
#include "kernel_bench.h"
#include "kernels.h"
#include "membw.h"
#include "quants.h"
}

namespace {

constexpr size_t kErrLen = 512;
// JS numbers hold integers exactly up to 2^53.
constexpr uint64_t kMaxSafeInteger = (1ULL << 53) - 1;

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

Napi::Value GgufRead(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "ggufRead(file): file must be a string");
    std::string path = info[0].As<Napi::String>();
    char err[kErrLen] = {0};
    bn_gguf *g = nullptr;
    if (bn_gguf_open(path.c_str(), &g, err, sizeof err) != 0) throw Napi::Error::New(env, err);

    auto out = Napi::Object::New(env);
    out.Set("version", Napi::Number::New(env, g->version));
    out.Set("alignment", Napi::Number::New(env, static_cast<double>(g->alignment)));
    out.Set("dataOffset", Napi::Number::New(env, static_cast<double>(g->data_offset)));
    out.Set("fileSize", Napi::Number::New(env, static_cast<double>(g->image_size)));
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
    bn_gguf_close(g);
    return out;
}

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
    return out;
}

Napi::Object Hparams(Napi::Env env, const bn_hparams &h) {
    auto o = Napi::Object::New(env);
    o.Set("arch", h.arch == BN_ARCH_QWEN3 ? "qwen3" : "llama");
    o.Set("nVocab", h.n_vocab);
    o.Set("nEmbd", h.n_embd);
    o.Set("nLayer", h.n_layer);
    o.Set("nHead", h.n_head);
    o.Set("nHeadKv", h.n_head_kv);
    o.Set("headDim", h.head_dim);
    o.Set("nFf", h.n_ff);
    o.Set("nCtxTrain", h.n_ctx_train);
    o.Set("nRot", h.n_rot);
    o.Set("ropeNeox", Napi::Boolean::New(env, h.rope_neox != 0));
    o.Set("qkNorm", Napi::Boolean::New(env, h.qk_norm != 0));
    o.Set("tiedOutput", Napi::Boolean::New(env, h.tied_output != 0));
    o.Set("ropeBase", h.rope_base);
    o.Set("rmsEps", h.rms_eps);
    return o;
}

class Context;

class Model : public Napi::ObjectWrap<Model> {
  public:
    static Napi::FunctionReference constructor;

    static void Init(Napi::Env env) {
        Napi::Function fn = DefineClass(env, "NativeModel", {
            InstanceMethod("createContext", &Model::CreateContext),
            InstanceMethod("close", &Model::Close),
        });
        constructor = Napi::Persistent(fn);
    }

    Model(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Model>(info) {
        model_ = static_cast<bn_model *>(info[0].As<Napi::External<bn_model>>().Data());
        Napi::Env env = info.Env();
        Value().Set("hparams", Hparams(env, *bn_model_hparams(model_)));
        Value().Set("kernels", bn_isa_name(bn_model_isa(model_)));
    }

    ~Model() override { Free(); }

    bn_model *Get(Napi::Env env) const {
        if (!model_) throw Napi::Error::New(env, "model is closed");
        return model_;
    }

    // Contexts hold a reference to their model object, so the model outlives them.
    void AddContext() { contexts_++; }
    void RemoveContext() { contexts_--; }

  private:
    Napi::Value CreateContext(const Napi::CallbackInfo &info);

    void Close(const Napi::CallbackInfo &info) {
        if (contexts_ > 0) throw Napi::Error::New(info.Env(), "close the model's contexts first");
        Free();
    }

    void Free() {
        if (model_) bn_model_free(model_);
        model_ = nullptr;
    }

    bn_model *model_ = nullptr;
    int contexts_ = 0;
};
Napi::FunctionReference Model::constructor;

class LoadWorker : public Napi::AsyncWorker {
  public:
    LoadWorker(Napi::Env env, std::string path, std::string kernels)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)),
          kernels_(std::move(kernels)) {}
    Napi::Promise Promise() { return deferred_.Promise(); }

    void Execute() override {
        bn_model_params p = {};
        p.kernels = kernels_.c_str();
        if (bn_model_load(path_.c_str(), &p, &model_, err_, sizeof err_) != 0) SetError(err_);
    }
    void OnOK() override {
        Napi::Env env = Env();
        deferred_.Resolve(Model::constructor.New({Napi::External<bn_model>::New(env, model_)}));
    }
    void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

  private:
    Napi::Promise::Deferred deferred_;
    std::string path_, kernels_;
    bn_model *model_ = nullptr;
    char err_[kErrLen] = {0};
};

Napi::Value LoadModel(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "loadModel(file, options): file must be a string");
    std::string kernels;
    if (info[1].IsObject()) {
        Napi::Value k = info[1].As<Napi::Object>().Get("kernels");
        if (k.IsString()) kernels = k.As<Napi::String>();
    }
    auto *w = new LoadWorker(env, info[0].As<Napi::String>(), kernels);
    w->Queue();
    return w->Promise();
}

int32_t IntOption(const Napi::Object &o, const char *key, int32_t def) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : def;
}
double NumberOption(const Napi::Object &o, const char *key, double def) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : def;
}

std::vector<int32_t> Tokens(Napi::Env env, const Napi::Value &v, const char *what) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw Napi::TypeError::New(env, std::string(what) + " must be an Int32Array");
    }
    auto a = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

class Context : public Napi::ObjectWrap<Context> {
  public:
    static Napi::FunctionReference constructor;

    static void Init(Napi::Env env) {
        Napi::Function fn = DefineClass(env, "NativeContext", {
            InstanceAccessor("nCtx", &Context::NCtx, nullptr),
            InstanceAccessor("nPast", &Context::NPast, nullptr),
            InstanceMethod("eval", &Context::Eval),
            InstanceMethod("generate", &Context::Generate),
            InstanceMethod("cancel", &Context::Cancel),
            InstanceMethod("truncate", &Context::Truncate),
            InstanceMethod("setThreads", &Context::SetThreads),
            InstanceMethod("tokens", &Context::TokensList),
            InstanceMethod("close", &Context::Close),
        });
        constructor = Napi::Persistent(fn);
    }

    Context(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Context>(info) {
        Napi::Env env = info.Env();
        model_ = Napi::ObjectWrap<Model>::Unwrap(info[0].As<Napi::Object>());
        modelRef_ = Napi::Persistent(info[0].As<Napi::Object>());
        Napi::Object o = info[1].As<Napi::Object>();
        bn_context_params p = {};
        p.n_ctx = IntOption(o, "nCtx", 0);
        Napi::Value kv = o.Get("kvType");
        p.kv_type = kv.IsString() && kv.As<Napi::String>().Utf8Value() == "f16" ? BN_KV_F16 : BN_KV_F32;
        p.n_threads = IntOption(o, "threads", 1);
        char err[kErrLen] = {0};
        if (bn_context_new(model_->Get(env), &p, &ctx_, err, sizeof err) != 0) throw Napi::Error::New(env, err);
        model_->AddContext();
    }

    ~Context() override { Free(); }

    // Set by the workers while they own the context.
    bool busy = false;
    std::atomic<int> cancel{0};
    bn_context *ctx_ = nullptr;

    // Marks the context as owned by a worker; callers check Idle() first so this cannot fail
    // half-way through constructing a worker.
    bn_context *Claim() {
        busy = true;
        return ctx_;
    }

    bn_context *Idle(Napi::Env env) {
        if (!ctx_) throw Napi::Error::New(env, "context is closed");
        if (busy) throw Napi::Error::New(env, "context is busy with another evaluation");
        return ctx_;
    }
    void Release() {
        busy = false;
        cancel.store(0);
    }

  private:
    Napi::Value NCtx(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), ctx_ ? bn_context_n_ctx(ctx_) : 0); }
    Napi::Value NPast(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), ctx_ ? bn_context_n_past(ctx_) : 0); }

    Napi::Value Eval(const Napi::CallbackInfo &info);
    Napi::Value Generate(const Napi::CallbackInfo &info);

    void Cancel(const Napi::CallbackInfo &) { cancel.store(1); }

    void Truncate(const Napi::CallbackInfo &info) {
        bn_context *c = Idle(info.Env());
        bn_context_truncate(c, info[0].As<Napi::Number>().Int32Value());
    }
    void SetThreads(const Napi::CallbackInfo &info) {
        bn_context *c = Idle(info.Env());
        bn_context_set_threads(c, info[0].As<Napi::Number>().Int32Value());
    }
    Napi::Value TokensList(const Napi::CallbackInfo &info) {
        bn_context *c = Idle(info.Env());
        int n = bn_context_n_past(c);
        auto out = Napi::Int32Array::New(info.Env(), static_cast<size_t>(n));
        if (n) std::memcpy(out.Data(), bn_context_tokens(c), sizeof(int32_t) * static_cast<size_t>(n));
        return out;
    }
    void Close(const Napi::CallbackInfo &info) {
        Idle(info.Env());
        Free();
    }

    void Free() {
        if (!ctx_) return;
        bn_context_free(ctx_);
        ctx_ = nullptr;
        model_->RemoveContext();
        modelRef_.Reset();
    }

    Model *model_ = nullptr;
    Napi::ObjectReference modelRef_;
};
Napi::FunctionReference Context::constructor;

Napi::Value Model::CreateContext(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Get(env);
    Napi::Object options = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
    return Context::constructor.New({Value(), options});
}

// Base for workers that own a context while they run: keeps the JS object alive and releases
// the context when done.
class ContextWorker : public Napi::AsyncWorker {
  public:
    ContextWorker(Napi::Env env, Context *owner, Napi::Object self)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), owner_(owner),
          ctx_(owner->Claim()) {
        self_ = Napi::Persistent(self);
    }
    Napi::Promise Promise() { return deferred_.Promise(); }
    void OnError(const Napi::Error &e) override {
        owner_->Release();
        deferred_.Reject(e.Value());
    }

  protected:
    Napi::Promise::Deferred deferred_;
    Context *owner_;
    bn_context *ctx_;
    Napi::ObjectReference self_;
    char err_[kErrLen] = {0};
};

class EvalWorker : public ContextWorker {
  public:
    EvalWorker(Napi::Env env, Context *owner, Napi::Object self, std::vector<int32_t> tokens, bool all, int vocab)
        : ContextWorker(env, owner, self), tokens_(std::move(tokens)), all_(all), vocab_(vocab) {}

    void Execute() override {
        size_t rows = all_ ? tokens_.size() : 1;
        logits_.resize(rows * static_cast<size_t>(vocab_));
        if (bn_context_eval(ctx_, tokens_.data(), static_cast<int>(tokens_.size()), logits_.data(), all_ ? 1 : 0, err_,
                            sizeof err_) != 0) {
            SetError(err_);
        }
    }
    void OnOK() override {
        owner_->Release();
        Napi::Env env = Env();
        auto out = Napi::Float32Array::New(env, logits_.size());
        std::memcpy(out.Data(), logits_.data(), logits_.size() * sizeof(float));
        deferred_.Resolve(out);
    }

  private:
    std::vector<int32_t> tokens_;
    bool all_;
    int vocab_;
    std::vector<float> logits_;
};

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

const char *FinishName(bn_finish f) {
    switch (f) {
        case BN_FINISH_STOP: return "stop";
        case BN_FINISH_LENGTH: return "length";
        default: return "cancelled";
    }
}

// Streams each sampled token to JS through the progress queue as soon as it exists.
class GenerateWorker : public Napi::AsyncProgressQueueWorker<int32_t> {
  public:
    GenerateWorker(Napi::Env env, Context *owner, Napi::Object self, Napi::Function onToken, std::vector<int32_t> prompt,
                   int maxTokens, std::vector<int32_t> stops, bn_sampler *sampler)
        : Napi::AsyncProgressQueueWorker<int32_t>(onToken), deferred_(Napi::Promise::Deferred::New(env)),
          owner_(owner), ctx_(owner->Claim()), prompt_(std::move(prompt)), maxTokens_(maxTokens),
          stops_(std::move(stops)), sampler_(sampler) {
        self_ = Napi::Persistent(self);
    }
    ~GenerateWorker() override { bn_sampler_free(sampler_); }
    Napi::Promise Promise() { return deferred_.Promise(); }

    void Execute(const ExecutionProgress &progress) override {
        progress_ = &progress;
        const volatile int *cancel = reinterpret_cast<const volatile int *>(&owner_->cancel);
        if (bn_generate(ctx_, sampler_, prompt_.data(), static_cast<int>(prompt_.size()), maxTokens_, stops_.data(),
                        static_cast<int>(stops_.size()), &GenerateWorker::OnTokenSampled, this, cancel, &stats_, err_,
                        sizeof err_) != 0) {
            SetError(err_);
        }
    }
    void OnProgress(const int32_t *tokens, size_t count) override {
        Napi::HandleScope scope(Env());
        for (size_t i = 0; i < count; i++) Callback().Call({Napi::Number::New(Env(), tokens[i])});
    }
    void OnOK() override {
        owner_->Release();
        Napi::Env env = Env();
        auto o = Napi::Object::New(env);
        o.Set("nPrompt", stats_.n_prompt);
        o.Set("nPromptReused", stats_.n_prompt_reused);
        o.Set("nGenerated", stats_.n_generated);
        o.Set("promptMs", stats_.prompt_ms);
        o.Set("genMs", stats_.gen_ms);
        o.Set("finish", FinishName(stats_.finish));
        deferred_.Resolve(o);
    }
    void OnError(const Napi::Error &e) override {
        owner_->Release();
        deferred_.Reject(e.Value());
    }

  private:
    static int OnTokenSampled(void *user, int32_t token) {
        auto *self = static_cast<GenerateWorker *>(user);
        self->progress_->Send(&token, 1);
        return 0;
    }

    Napi::Promise::Deferred deferred_;
    Context *owner_;
    bn_context *ctx_;
    Napi::ObjectReference self_;
    std::vector<int32_t> prompt_;
    int maxTokens_;
    std::vector<int32_t> stops_;
    bn_sampler *sampler_;
    const ExecutionProgress *progress_ = nullptr;
    bn_generate_stats stats_ = {};
    char err_[kErrLen] = {0};
};

bn_sampler_params SamplerParams(const Napi::Object &s) {
    bn_sampler_params p = {};
    p.temperature = static_cast<float>(NumberOption(s, "temperature", 0.8));
    p.top_k = IntOption(s, "topK", 40);
    p.top_p = static_cast<float>(NumberOption(s, "topP", 0.95));
    p.min_p = static_cast<float>(NumberOption(s, "minP", 0.05));
    p.repeat_penalty = static_cast<float>(NumberOption(s, "repeatPenalty", 1.0));
    p.repeat_last_n = IntOption(s, "repeatLastN", 64);
    p.seed = static_cast<uint64_t>(NumberOption(s, "seed", 0));
    return p;
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
    std::vector<int32_t> stops = o.Get("stopIds").IsUndefined() ? std::vector<int32_t>() : Tokens(env, o.Get("stopIds"), "stopIds");
    Napi::Object s = o.Get("sampling").IsObject() ? o.Get("sampling").As<Napi::Object>() : Napi::Object::New(env);
    bn_sampler_params sp = SamplerParams(s);
    Idle(env);
    bn_sampler *sampler = bn_sampler_new(&sp, bn_model_hparams(model_->Get(env))->n_vocab);
    if (!sampler) throw Napi::Error::New(env, "out of memory creating the sampler");
    auto *w = new GenerateWorker(env, this, Value(), info[2].As<Napi::Function>(), std::move(prompt), maxTokens,
                                 std::move(stops), sampler);
    w->Queue();
    return w->Promise();
}

// ---- Memory bandwidth probe (bonsai bench) ----
// Synchronous: the bench calls it before any model is loaded, when there is nothing else to run.
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

// ---- Kernel timing (bonsai bench kernels) ----
// Synchronous, like the bandwidth probe: nothing else runs while the bench does.
Napi::Value KernelBench(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "kernelBench(spec): an object expected");
    Napi::Object o = info[0].As<Napi::Object>();
    const std::string type = o.Get("type").ToString(), path = o.Get("path").ToString();
    bn_kernel_bench_spec s = {};
    s.type = UINT32_MAX;
    for (uint32_t t = 0; t < 64; t++) {
        if (bn_type_get(t) && type == bn_type_get(t)->name) s.type = t;
    }
    s.isa = BN_ISA_COUNT;
    for (int i = 0; i < BN_ISA_COUNT; i++) {
        if (path == bn_isa_name(static_cast<bn_isa>(i))) s.isa = static_cast<bn_isa>(i);
    }
    if (s.type == UINT32_MAX) throw Napi::Error::New(env, "kernelBench: unknown weight type " + type);
    if (s.isa == BN_ISA_COUNT) throw Napi::Error::New(env, "kernelBench: unknown kernel path " + path);
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
    return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Model::Init(env);
    Context::Init(env);
    exports.Set("ggufRead", Napi::Function::New(env, GgufRead));
    exports.Set("loadModel", Napi::Function::New(env, LoadModel));
    exports.Set("kernelPaths", Napi::Function::New(env, KernelPaths));
    exports.Set("memoryBandwidth", Napi::Function::New(env, MemoryBandwidth));
    exports.Set("kernelBench", Napi::Function::New(env, KernelBench));
    return exports;
}

}  // namespace

NODE_API_MODULE(bonsai, Init)
