// NativeModel and loadModel().
#include "napi/model.h"

#include <string>

#include "napi/addon.h"
#include "napi/context.h"
#include "napi/workers.h"

namespace bonsai {
namespace {

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

}  // namespace

Napi::FunctionReference Model::constructor;

void Model::Init(Napi::Env env) {
    Napi::Function fn = DefineClass(env, "NativeModel", {
        InstanceMethod("createContext", &Model::CreateContext),
        InstanceMethod("close", &Model::Close),
    });
    constructor = Napi::Persistent(fn);
}

Model::Model(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Model>(info) {
    model_ = static_cast<bn_model *>(info[0].As<Napi::External<bn_model>>().Data());
    Napi::Env env = info.Env();
    Value().Set("hparams", Hparams(env, *bn_model_hparams(model_)));
    Value().Set("kernels", bn_isa_name(bn_model_isa(model_)));
    char label[64];
    bn_model_kernels_label(model_, label, sizeof label);
    Value().Set("kernelsLabel", label);
}

Napi::Value Model::CreateContext(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Get(env);
    Napi::Object options = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
    return Context::constructor.New({Value(), options});
}

void Model::Close(const Napi::CallbackInfo &info) {
    if (contexts_ > 0) throw Napi::Error::New(info.Env(), "close the model's contexts first");
    Free();
}

void Model::Free() {
    if (model_) bn_model_free(model_);
    model_ = nullptr;
}

Napi::Value LoadModel(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "loadModel(file, options): file must be a string");
    std::string kernels, image, imageKey;
    bool mlock = false;
    if (info[1].IsObject()) {
        Napi::Object o = info[1].As<Napi::Object>();
        auto text = [&o](const char *key, std::string &out) {
            Napi::Value v = o.Get(key);
            if (v.IsString()) out = v.As<Napi::String>();
        };
        text("kernels", kernels);
        text("image", image);
        text("imageKey", imageKey);
        mlock = o.Get("mlock").ToBoolean();
    }
    auto *w = new LoadWorker(env, info[0].As<Napi::String>(), kernels, image, imageKey, mlock);
    w->Queue();
    return w->Promise();
}

}  // namespace bonsai
