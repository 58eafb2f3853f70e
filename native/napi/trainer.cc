// Trainer: the distillation trainer (train/trainer.h) for `bonsai distill`. Steps and scoring
// run on AsyncWorkers, one at a time per trainer; state moves in and out as copies, for
// checkpoints and export.
#include <napi.h>

#include <string>
#include <vector>

#include "napi/addon.h"

extern "C" {
#include "train/trainer.h"
}

namespace bonsai {

namespace {

class Trainer : public Napi::ObjectWrap<Trainer> {
  public:
    static Napi::Function Define(Napi::Env env);
    explicit Trainer(const Napi::CallbackInfo &info);
    ~Trainer() override { bn_trainer_free(tr_); }

    bn_trainer *Claim(Napi::Env env) {
        if (!tr_) throw Napi::Error::New(env, "the trainer is closed");
        if (busy_) throw Napi::Error::New(env, "the trainer is busy with a step: await it first");
        busy_ = true;
        return tr_;
    }
    void Release() { busy_ = false; }

  private:
    Napi::Value Step(const Napi::CallbackInfo &info);
    Napi::Value Score(const Napi::CallbackInfo &info);
    Napi::Value Tensors(const Napi::CallbackInfo &info);
    Napi::Value GetState(const Napi::CallbackInfo &info);
    void SetState(const Napi::CallbackInfo &info);
    Napi::Value Weights(const Napi::CallbackInfo &info);
    Napi::Value LrAt(const Napi::CallbackInfo &info);
    void Close(const Napi::CallbackInfo &info);

    bn_trainer *tr_ = nullptr;
    bn_trainer_config config_{};
    bool busy_ = false;
};

double Num(const Napi::Object &o, const char *key) { return RequiredNumber(o, key, "trainer config").DoubleValue(); }

int Int(const Napi::Object &o, const char *key) {
    return IntArgument(o.Env(), o.Get(key), (std::string("trainer config.") + key).c_str());
}

Napi::Float32Array CopyOut(Napi::Env env, const float *src, int64_t n) {
    auto a = Napi::Float32Array::New(env, static_cast<size_t>(n));
    std::copy(src, src + n, a.Data());
    return a;
}

void CopyIn(Napi::Env env, const Napi::Value &v, float *dst, int64_t n, const char *what) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        v.As<Napi::Float32Array>().ElementLength() != static_cast<size_t>(n)) {
        throw Napi::TypeError::New(env, std::string("state.") + what + " must be a Float32Array of " + std::to_string(n) + " values");
    }
    auto a = v.As<Napi::Float32Array>();
    std::copy(a.Data(), a.Data() + n, dst);
}

// The one in-flight job of a trainer: holds the JS object alive and frees the trainer for the
// next job when it settles.
class TrainerWorker : public Napi::AsyncWorker {
  public:
    TrainerWorker(Napi::Env env, Trainer *owner, Napi::Object self, bn_trainer *tr)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), owner_(owner), tr_(tr),
          self_(Napi::Persistent(self)) {}
    Napi::Promise Promise() { return deferred_.Promise(); }
    void OnError(const Napi::Error &e) override {
        owner_->Release();
        deferred_.Reject(e.Value());
    }

  protected:
    Napi::Promise::Deferred deferred_;
    Trainer *owner_;
    bn_trainer *tr_;
    Napi::ObjectReference self_;
    char err_[kErrLen] = {0};
};

class StepWorker : public TrainerWorker {
  public:
    StepWorker(Napi::Env env, Trainer *owner, Napi::Object self, bn_trainer *tr, std::vector<int32_t> tokens, int batch)
        : TrainerWorker(env, owner, self, tr), tokens_(std::move(tokens)), batch_(batch) {}
    void Execute() override {
        if (bn_trainer_step(tr_, tokens_.data(), batch_, &m_, err_, sizeof err_)) SetError(err_);
    }
    void OnOK() override {
        owner_->Release();
        auto o = Napi::Object::New(Env());
        o.Set("loss", m_.loss);
        o.Set("kl", m_.kl);
        o.Set("nll", m_.nll);
        o.Set("gradNorm", m_.grad_norm);
        o.Set("lr", m_.lr);
        o.Set("step", static_cast<double>(m_.step));
        deferred_.Resolve(o);
    }

  private:
    std::vector<int32_t> tokens_;
    int batch_;
    bn_train_metrics m_{};
};

class ScoreWorker : public TrainerWorker {
  public:
    ScoreWorker(Napi::Env env, Trainer *owner, Napi::Object self, bn_trainer *tr, std::vector<int32_t> tokens, bool teacher)
        : TrainerWorker(env, owner, self, tr), tokens_(std::move(tokens)), teacher_(teacher) {}
    void Execute() override {
        if (bn_trainer_score(tr_, teacher_, tokens_.data(), static_cast<int>(tokens_.size()), &sum_, err_, sizeof err_)) SetError(err_);
    }
    void OnOK() override {
        owner_->Release();
        deferred_.Resolve(Napi::Number::New(Env(), sum_));
    }

  private:
    std::vector<int32_t> tokens_;
    bool teacher_;
    double sum_ = 0.0;
};

Napi::Function Trainer::Define(Napi::Env env) {
    return DefineClass(env, "Trainer",
                       {InstanceMethod<&Trainer::Step>("step"), InstanceMethod<&Trainer::Score>("score"),
                        InstanceMethod<&Trainer::Tensors>("tensors"), InstanceMethod<&Trainer::GetState>("getState"),
                        InstanceMethod<&Trainer::SetState>("setState"), InstanceMethod<&Trainer::Weights>("weights"),
                        InstanceMethod<&Trainer::LrAt>("lrAt"), InstanceMethod<&Trainer::Close>("close")});
}

// new Trainer(config, teacherPath | null): config carries the shape and every hyperparameter.
Trainer::Trainer(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Trainer>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "new Trainer(config, teacherPath)");
    auto c = info[0].As<Napi::Object>();
    if (!c.Get("shape").IsObject()) throw Napi::TypeError::New(env, "trainer config: shape must be an object");
    auto s = c.Get("shape").As<Napi::Object>();
    config_.shape = bn_train_shape{Int(s, "vocab"), Int(s, "dim"), Int(s, "hidden"), Int(s, "layers"), Int(s, "heads"),
                                   Int(s, "kvHeads"), Int(s, "headDim"), s.Get("tied").ToBoolean().Value() ? 1 : 0,
                                   static_cast<float>(Num(s, "ropeBase")), static_cast<float>(Num(s, "normEps"))};
    config_.seq_len = Int(c, "seqLen");
    config_.quantize = c.Get("quantize").ToBoolean().Value() ? 1 : 0;
    config_.threads = Int(c, "threads");
    config_.lr = static_cast<float>(Num(c, "lr"));
    config_.lr_min = static_cast<float>(Num(c, "lrMin"));
    config_.warmup_steps = Int(c, "warmupSteps");
    config_.total_steps = Int(c, "totalSteps");
    config_.beta1 = static_cast<float>(Num(c, "beta1"));
    config_.beta2 = static_cast<float>(Num(c, "beta2"));
    config_.adam_eps = static_cast<float>(Num(c, "adamEps"));
    config_.weight_decay = static_cast<float>(Num(c, "weightDecay"));
    config_.clip = static_cast<float>(Num(c, "clip"));
    config_.kl_weight = static_cast<float>(Num(c, "klWeight"));
    config_.ce_weight = static_cast<float>(Num(c, "ceWeight"));
    config_.init_std = static_cast<float>(Num(c, "initStd"));
    config_.seed = static_cast<uint64_t>(Num(c, "seed"));
    std::string teacher;
    if (info[1].IsString()) teacher = info[1].As<Napi::String>().Utf8Value();
    char err[kErrLen] = {0};
    tr_ = bn_trainer_new(&config_, teacher.empty() ? nullptr : teacher.c_str(), err, sizeof err);
    if (!tr_) throw Napi::Error::New(env, err);
}

// step(tokens: Int32Array of batch x (seqLen + 1), batch) -> Promise<metrics>
Napi::Value Trainer::Step(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto tokens = Tokens(env, info[0], "step(tokens, batch): tokens");
    int batch = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
    if (batch < 1 || tokens.size() != static_cast<size_t>(batch) * (config_.seq_len + 1)) {
        throw Napi::RangeError::New(env, "step(tokens, batch): tokens must hold batch x " + std::to_string(config_.seq_len + 1) + " ids");
    }
    auto *w = new StepWorker(env, this, info.This().As<Napi::Object>(), Claim(env), std::move(tokens), batch);
    w->Queue();
    return w->Promise();
}

// score(tokens: Int32Array, teacher = false) -> Promise<sum of NLL over positions 1..n-1>
Napi::Value Trainer::Score(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto tokens = Tokens(env, info[0], "score(tokens, teacher): tokens");
    bool teacher = info.Length() > 1 && info[1].ToBoolean().Value();
    auto *w = new ScoreWorker(env, this, info.This().As<Napi::Object>(), Claim(env), std::move(tokens), teacher);
    w->Queue();
    return w->Promise();
}

// tensors() -> [{ name, cols, rows }] in parameter-buffer order.
Napi::Value Trainer::Tensors(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!tr_) throw Napi::Error::New(env, "the trainer is closed");
    const bn_train_layout *l = bn_trainer_layout(tr_);
    auto out = Napi::Array::New(env, l->n_tensors);
    for (int i = 0; i < l->n_tensors; i++) {
        auto o = Napi::Object::New(env);
        o.Set("name", l->tensors[i].name);
        o.Set("cols", static_cast<double>(l->tensors[i].cols));
        o.Set("rows", static_cast<double>(l->tensors[i].rows));
        o.Set("offset", static_cast<double>(l->tensors[i].offset));
        out.Set(i, o);
    }
    return out;
}

// getState() -> { params, m, v, steps }: copies, safe to keep across steps.
Napi::Value Trainer::GetState(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bn_trainer *tr = Claim(env);
    const int64_t n = bn_trainer_layout(tr)->n_params;
    auto o = Napi::Object::New(env);
    o.Set("params", CopyOut(env, bn_trainer_params(tr), n));
    o.Set("m", CopyOut(env, bn_trainer_moment(tr, 0), n));
    o.Set("v", CopyOut(env, bn_trainer_moment(tr, 1), n));
    o.Set("steps", static_cast<double>(*bn_trainer_steps(tr)));
    Release();
    return o;
}

void Trainer::SetState(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "setState({ params, m, v, steps })");
    auto o = info[0].As<Napi::Object>();
    bn_trainer *tr = Claim(env);
    try {
        const int64_t n = bn_trainer_layout(tr)->n_params;
        double steps = o.Get("steps").IsNumber() ? o.Get("steps").As<Napi::Number>().DoubleValue() : -1;
        if (steps < 0 || steps != static_cast<double>(static_cast<int64_t>(steps))) throw Napi::TypeError::New(env, "state.steps must be an integer >= 0");
        CopyIn(env, o.Get("params"), bn_trainer_params(tr), n, "params");
        CopyIn(env, o.Get("m"), bn_trainer_moment(tr, 0), n, "m");
        CopyIn(env, o.Get("v"), bn_trainer_moment(tr, 1), n, "v");
        *bn_trainer_steps(tr) = static_cast<int64_t>(steps);
    } catch (...) {
        Release();
        throw;
    }
    Release();
}

// weights() -> Float32Array: the weights as the forward pass uses them (what export writes).
Napi::Value Trainer::Weights(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bn_trainer *tr = Claim(env);
    auto out = CopyOut(env, bn_trainer_effective_params(tr), bn_trainer_layout(tr)->n_params);
    Release();
    return out;
}

Napi::Value Trainer::LrAt(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), bn_trainer_lr_at(&config_, info[0].As<Napi::Number>().Int64Value()));
}

void Trainer::Close(const Napi::CallbackInfo &info) {
    if (busy_) throw Napi::Error::New(info.Env(), "the trainer is busy with a step: await it first");
    bn_trainer_free(tr_);
    tr_ = nullptr;
}

}  // namespace

void DefineTrainer(Napi::Env env, Napi::Object exports) { exports.Set("Trainer", Trainer::Define(env)); }

}  // namespace bonsai
