// notify(state): a notification to the service manager (sd_notify) from the process systemd
// started, which is this one (NotifyAccess=main). The protocol is core/notify.c's.
#include <napi.h>

#include <string>

#include "napi/addon.h"

extern "C" {
#include "core/notify.h"
}

namespace bonsai {

Napi::Value Notify(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "notify(state): state must be a string");
    const std::string state = info[0].As<Napi::String>().Utf8Value();
    // The C side takes a C string: a NUL would cut the state short without anyone noticing.
    if (state.find('\0') != std::string::npos) throw Napi::TypeError::New(env, "notify(state): state must not contain NUL");
    char err[kErrLen] = {0};
    const int sent = bn_notify(state.c_str(), err, sizeof err);
    if (sent < 0) throw Napi::Error::New(env, err);
    return Napi::Boolean::New(env, sent == 1);
}

}  // namespace bonsai
