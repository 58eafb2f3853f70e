// NativeModel: a loaded model (bn_model). JS gets one from loadModel(), which loads on a worker
// thread (LoadWorker), and makes contexts with createContext().
#ifndef BONSAI_NAPI_MODEL_H
#define BONSAI_NAPI_MODEL_H

#include <napi.h>

extern "C" {
#include "model/engine.h"
}

namespace bonsai {

class Model : public Napi::ObjectWrap<Model> {
  public:
    static Napi::FunctionReference constructor;
    static void Init(Napi::Env env);

    // info[0]: an External holding the loaded bn_model, which the object then owns.
    explicit Model(const Napi::CallbackInfo &info);
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
    void Close(const Napi::CallbackInfo &info);
    void Free();

    bn_model *model_ = nullptr;
    int contexts_ = 0;
};

}  // namespace bonsai

#endif
