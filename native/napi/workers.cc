// The AsyncWorkers of loadModel(), eval() and generate().
#include "napi/workers.h"

#include <cstring>

#include "napi/model.h"

extern "C" {
#include "core/common.h"
}

namespace bonsai {
namespace {

const char *FinishName(bn_finish f) {
    switch (f) {
        case BN_FINISH_STOP: return "stop";
        case BN_FINISH_LENGTH: return "length";
        default: return "cancelled";
    }
}

}  // namespace

LoadWorker::LoadWorker(Napi::Env env, std::string path, std::string kernels, std::string image, std::string imageKey,
                       bool mlock)
    : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)),
      kernels_(std::move(kernels)), image_(std::move(image)), imageKey_(std::move(imageKey)), mlock_(mlock) {}

void LoadWorker::Execute() {
    bn_model_params p = {};
    p.kernels = kernels_.c_str();
    if (!image_.empty()) {
        p.image = image_.c_str();
        p.image_key = imageKey_.c_str();
    }
    const double start = bn_now_ms();
    if (bn_model_load(path_.c_str(), &p, &model_, err_, sizeof err_) != 0) {
        SetError(err_);
        return;
    }
    loadMs_ = bn_now_ms() - start;
    // Here, off the event loop: locking reads in whatever of the weights is not in memory yet.
    // A refusal is reported with the load, which stands: the model runs unlocked.
    if (mlock_ && bn_model_lock(model_, &lockedBytes_, lockErr_, sizeof lockErr_) != 0) lockedBytes_ = 0;
}

void LoadWorker::OnOK() {
    Napi::Env env = Env();
    Napi::Object model = Model::constructor.New({Napi::External<bn_model>::New(env, model_)});
    static const char *states[] = {"off", "used", "written", "not-written"};
    const char *note;
    const bn_image_state state = bn_model_image_state(model_, &note);
    auto load = Napi::Object::New(env);
    load.Set("ms", loadMs_);
    load.Set("image", states[state]);
    load.Set("imageNote", note);
    load.Set("lockedBytes", static_cast<double>(lockedBytes_));
    load.Set("lockError", lockErr_);
    model.Set("load", load);
    deferred_.Resolve(model);
}

ContextWorker::ContextWorker(Napi::Env env, Context *owner, Napi::Object self)
    : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), owner_(owner), ctx_(owner->Claim()) {
    self_ = Napi::Persistent(self);
}

void ContextWorker::OnError(const Napi::Error &e) {
    owner_->Release();
    deferred_.Reject(e.Value());
}

EvalWorker::EvalWorker(Napi::Env env, Context *owner, Napi::Object self, std::vector<int32_t> tokens, bool all,
                       int vocab)
    : ContextWorker(env, owner, self), tokens_(std::move(tokens)), all_(all), vocab_(vocab) {}

void EvalWorker::Execute() {
    size_t rows = all_ ? tokens_.size() : 1;
    logits_.resize(rows * static_cast<size_t>(vocab_));
    if (bn_context_eval(ctx_, tokens_.data(), static_cast<int>(tokens_.size()), logits_.data(), all_ ? 1 : 0, err_,
                        sizeof err_) != 0) {
        SetError(err_);
    }
}

void EvalWorker::OnOK() {
    owner_->Release();
    Napi::Env env = Env();
    auto out = Napi::Float32Array::New(env, logits_.size());
    std::memcpy(out.Data(), logits_.data(), logits_.size() * sizeof(float));
    deferred_.Resolve(out);
}

GenerateWorker::GenerateWorker(Napi::Env env, Context *owner, Napi::Object self, Napi::Function onToken,
                               std::vector<int32_t> prompt, int maxTokens, std::vector<int32_t> stops,
                               int draftMax, bn_sampler *sampler)
    : Napi::AsyncProgressQueueWorker<int32_t>(onToken), deferred_(Napi::Promise::Deferred::New(env)), owner_(owner),
      ctx_(owner->Claim()), prompt_(std::move(prompt)), maxTokens_(maxTokens), stops_(std::move(stops)),
      draftMax_(draftMax), sampler_(sampler) {
    self_ = Napi::Persistent(self);
}

void GenerateWorker::Execute(const ExecutionProgress &progress) {
    progress_ = &progress;
    const volatile int *cancel = reinterpret_cast<const volatile int *>(&owner_->cancel);
    if (bn_generate(ctx_, sampler_, prompt_.data(), static_cast<int>(prompt_.size()), maxTokens_, stops_.data(),
                    static_cast<int>(stops_.size()), draftMax_, &GenerateWorker::OnTokenSampled, this, cancel, &stats_, err_,
                    sizeof err_) != 0) {
        SetError(err_);
    }
}

void GenerateWorker::OnProgress(const int32_t *tokens, size_t count) {
    Napi::HandleScope scope(Env());
    for (size_t i = 0; i < count; i++) Callback().Call({Napi::Number::New(Env(), tokens[i])});
}

void GenerateWorker::OnOK() {
    owner_->Release();
    Napi::Env env = Env();
    auto o = Napi::Object::New(env);
    o.Set("nPrompt", stats_.n_prompt);
    o.Set("nPromptReused", stats_.n_prompt_reused);
    o.Set("nGenerated", stats_.n_generated);
    o.Set("nDrafted", stats_.n_drafted);
    o.Set("nAccepted", stats_.n_accepted);
    o.Set("promptMs", stats_.prompt_ms);
    o.Set("genMs", stats_.gen_ms);
    o.Set("finish", FinishName(stats_.finish));
    deferred_.Resolve(o);
}

void GenerateWorker::OnError(const Napi::Error &e) {
    owner_->Release();
    deferred_.Reject(e.Value());
}

int GenerateWorker::OnTokenSampled(void *user, int32_t token) {
    auto *self = static_cast<GenerateWorker *>(user);
    self->progress_->Send(&token, 1);
    return 0;
}

}  // namespace bonsai
