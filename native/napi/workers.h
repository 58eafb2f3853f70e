// The AsyncWorkers: everything that runs the model happens on them, never on the JS thread.
// Each settles a promise; the context workers own their context while they run.
#ifndef BONSAI_NAPI_WORKERS_H
#define BONSAI_NAPI_WORKERS_H

#include <napi.h>

#include <string>
#include <vector>

#include "napi/addon.h"
#include "napi/context.h"

extern "C" {
#include "model/engine.h"
}

namespace bonsai {

// loadModel(): loads and repacks the weights (or maps them from a runtime image), then resolves
// with a NativeModel.
class LoadWorker : public Napi::AsyncWorker {
  public:
    LoadWorker(Napi::Env env, std::string path, std::string kernels, std::string image, std::string imageKey, bool mlock);
    Napi::Promise Promise() { return deferred_.Promise(); }

    void Execute() override;
    void OnOK() override;
    void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

  private:
    Napi::Promise::Deferred deferred_;
    std::string path_, kernels_, image_, imageKey_;
    bool mlock_;
    bn_model *model_ = nullptr;
    double loadMs_ = 0;
    uint64_t lockedBytes_ = 0;
    char err_[kErrLen] = {0};
    char lockErr_[kErrLen] = {0};
};

// Base for workers that own a context while they run: keeps the JS object alive and releases
// the context when done.
class ContextWorker : public Napi::AsyncWorker {
  public:
    ContextWorker(Napi::Env env, Context *owner, Napi::Object self);
    Napi::Promise Promise() { return deferred_.Promise(); }
    void OnError(const Napi::Error &e) override;

  protected:
    Napi::Promise::Deferred deferred_;
    Context *owner_;
    bn_context *ctx_;
    Napi::ObjectReference self_;
    char err_[kErrLen] = {0};
};

// eval(): resolves with the logits of the last token, or of every token when `all`.
class EvalWorker : public ContextWorker {
  public:
    EvalWorker(Napi::Env env, Context *owner, Napi::Object self, std::vector<int32_t> tokens, bool all, int vocab);

    void Execute() override;
    void OnOK() override;

  private:
    std::vector<int32_t> tokens_;
    bool all_;
    int vocab_;
    std::vector<float> logits_;
};

// generate(): streams each sampled token to JS through the progress queue as soon as it exists,
// then resolves with the statistics. Owns the sampler.
class GenerateWorker : public Napi::AsyncProgressQueueWorker<int32_t> {
  public:
    GenerateWorker(Napi::Env env, Context *owner, Napi::Object self, Napi::Function onToken, std::vector<int32_t> prompt,
                   int maxTokens, std::vector<int32_t> stops, int draftMax, bn_sampler *sampler);
    ~GenerateWorker() override { bn_sampler_free(sampler_); }
    Napi::Promise Promise() { return deferred_.Promise(); }

    void Execute(const ExecutionProgress &progress) override;
    void OnProgress(const int32_t *tokens, size_t count) override;
    void OnOK() override;
    void OnError(const Napi::Error &e) override;

  private:
    static int OnTokenSampled(void *user, int32_t token);

    Napi::Promise::Deferred deferred_;
    Context *owner_;
    bn_context *ctx_;
    Napi::ObjectReference self_;
    std::vector<int32_t> prompt_;
    int maxTokens_;
    std::vector<int32_t> stops_;
    int draftMax_;
    bn_sampler *sampler_;
    const ExecutionProgress *progress_ = nullptr;
    bn_generate_stats stats_ = {};
    char err_[kErrLen] = {0};
};

}  // namespace bonsai

#endif
