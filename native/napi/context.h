// NativeContext: a context (bn_context: KV cache, threads, evaluated tokens) of a NativeModel.
// eval() and generate() hand it to a worker (workers.h), which owns it until it finishes.
// kvExport() and kvImport() copy KV blocks on the JS thread (a memcpy's worth of work), refused
// like every other call while a worker owns the context.
#ifndef BONSAI_NAPI_CONTEXT_H
#define BONSAI_NAPI_CONTEXT_H

#include <napi.h>

#include <atomic>

#include "napi/model.h"

extern "C" {
#include "model/engine.h"
}

namespace bonsai {

class Context : public Napi::ObjectWrap<Context> {
  public:
    static Napi::FunctionReference constructor;
    static void Init(Napi::Env env);

    // info[0]: the NativeModel object, info[1]: the options of createContext().
    explicit Context(const Napi::CallbackInfo &info);
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

    // For what only reads the context's fixed shape, which a worker does not change.
    bn_context *Open(Napi::Env env) {
        if (!ctx_) throw Napi::Error::New(env, "context is closed");
        return ctx_;
    }

    bn_context *Idle(Napi::Env env) {
        Open(env);
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
    void Truncate(const Napi::CallbackInfo &info);
    void SetThreads(const Napi::CallbackInfo &info);
    // These two may be called while a worker owns the context (thermal control between tokens).
    void LimitThreads(const Napi::CallbackInfo &info);
    void Pause(const Napi::CallbackInfo &info);
    Napi::Value TokensList(const Napi::CallbackInfo &info);
    Napi::Value KvBytes(const Napi::CallbackInfo &info);
    Napi::Value KvExport(const Napi::CallbackInfo &info);
    void KvImport(const Napi::CallbackInfo &info);
    void SetDrafter(const Napi::CallbackInfo &info);
    void Close(const Napi::CallbackInfo &info);
    void Free();
    void Detach();

    Model *model_ = nullptr;
    Napi::ObjectReference modelRef_;
    // speculative decoding with a draft model: the context drafting for this one (kept alive while
    // attached), and the one this one drafts for
    Context *drafter_ = nullptr;
    Napi::ObjectReference drafterRef_;
    Context *draftsFor_ = nullptr;
};

}  // namespace bonsai

#endif
