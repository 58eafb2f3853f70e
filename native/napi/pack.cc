// packWrite / packVerify / packUnpack: the .bnz jobs (pack/bnz.h) on AsyncWorkers, reporting
// progress (bytes of GGUF done and total) to a callback, and resolving with what was done.
#include <napi.h>

#include <array>
#include <string>

#include "napi/addon.h"

extern "C" {
#include "pack/bnz.h"
}

namespace bonsai {

namespace {

using Progress = std::array<double, 2>;  // done, total

enum class PackJob { Write, Verify, Unpack };

class PackWorker : public Napi::AsyncProgressQueueWorker<Progress> {
  public:
    PackWorker(Napi::Env env, Napi::Function onProgress, PackJob job, std::string in, std::string out, int level,
               int threads)
        : Napi::AsyncProgressQueueWorker<Progress>(onProgress), deferred_(Napi::Promise::Deferred::New(env)), job_(job),
          in_(std::move(in)), out_(std::move(out)), level_(level), threads_(threads) {}
    Napi::Promise Promise() { return deferred_.Promise(); }

    void Execute(const ExecutionProgress &progress) override {
        progress_ = &progress;
        if (job_ == PackJob::Write) {
            if (bn_pack_write(in_.c_str(), out_.c_str(), level_, threads_, Report, this, &stats_, err_, sizeof err_))
                SetError(err_);
            return;
        }
        bn_pack *p;
        if (bn_pack_open(in_.c_str(), &p, err_, sizeof err_)) {
            SetError(in_ + ": " + err_);
            return;
        }
        const int rc = job_ == PackJob::Verify ? bn_pack_verify(p, threads_, Report, this, err_, sizeof err_)
                                               : bn_pack_unpack(p, out_.c_str(), threads_, Report, this, err_, sizeof err_);
        bn_pack_close(p);
        if (rc) SetError(in_ + ": " + err_);
    }
    void OnProgress(const Progress *data, size_t count) override {
        Napi::HandleScope scope(Env());
        if (count) Callback().Call({Napi::Number::New(Env(), data[count - 1][0]), Napi::Number::New(Env(), data[count - 1][1])});
    }
    void OnOK() override {
        Napi::Env env = Env();
        auto o = Napi::Object::New(env);
        if (job_ == PackJob::Write) {
            static const char *kinds[BN_PACK_STREAM_KINDS] = {"scales", "signs", "ternary", "values", "overhead"};
            auto in = Napi::Object::New(env), out = Napi::Object::New(env);
            for (int k = 0; k < BN_PACK_STREAM_KINDS; k++) {
                in.Set(kinds[k], static_cast<double>(stats_.in[k]));
                out.Set(kinds[k], static_cast<double>(stats_.out[k]));
            }
            o.Set("decoded", in);
            o.Set("coded", out);
        }
        deferred_.Resolve(o);
    }
    void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

  private:
    static void Report(void *user, uint64_t done, uint64_t total) {
        auto *self = static_cast<PackWorker *>(user);
        Progress p = {static_cast<double>(done), static_cast<double>(total)};
        self->progress_->Send(&p, 1);
    }

    Napi::Promise::Deferred deferred_;
    const ExecutionProgress *progress_ = nullptr;
    PackJob job_;
    std::string in_, out_;
    int level_, threads_;
    bn_pack_stats stats_ = {};
    char err_[kErrLen] = {0};
};

std::string StringArgument(Napi::Env env, const Napi::Value &v, const char *what) {
    if (!v.IsString()) throw Napi::TypeError::New(env, std::string(what) + " must be a string");
    return v.As<Napi::String>();
}

Napi::Function ProgressArgument(Napi::Env env, const Napi::Value &v, const char *what) {
    if (!v.IsFunction()) throw Napi::TypeError::New(env, std::string(what) + " must be a function");
    return v.As<Napi::Function>();
}

}  // namespace

// packWrite(gguf, out, level, threads, onProgress) -> {decoded, coded}: bytes per stream kind.
Napi::Value PackWrite(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const char *sig = "packWrite(gguf, out, level, threads, onProgress)";
    auto *w = new PackWorker(env, ProgressArgument(env, info[4], sig), PackJob::Write, StringArgument(env, info[0], sig),
                             StringArgument(env, info[1], sig), IntArgument(env, info[2], sig),
                             IntArgument(env, info[3], sig));
    w->Queue();
    return w->Promise();
}

// packVerify(pack, threads, onProgress).
Napi::Value PackVerify(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const char *sig = "packVerify(pack, threads, onProgress)";
    auto *w = new PackWorker(env, ProgressArgument(env, info[2], sig), PackJob::Verify, StringArgument(env, info[0], sig),
                             "", 0, IntArgument(env, info[1], sig));
    w->Queue();
    return w->Promise();
}

// packUnpack(pack, out, threads, onProgress).
Napi::Value PackUnpack(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const char *sig = "packUnpack(pack, out, threads, onProgress)";
    auto *w = new PackWorker(env, ProgressArgument(env, info[3], sig), PackJob::Unpack, StringArgument(env, info[0], sig),
                             StringArgument(env, info[1], sig), 0, IntArgument(env, info[2], sig));
    w->Queue();
    return w->Promise();
}

}  // namespace bonsai
