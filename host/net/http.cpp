#include "net/http.hpp"

#include "net/text.hpp"

#include <rapidjson/encodings.h>
#include <rapidjson/memorystream.h>

#include <algorithm>
#include <atomic>

namespace nk::net {

bool valid_utf8(std::string_view s) {
    // ASCII, the common case, needs no decoding.
    if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
        return true;
    }
    // RapidJSON's validator (the one its parser uses for kParseValidateEncodingFlag). Its
    // MemoryStream yields '\0' past the end, which no multi-byte sequence accepts as a
    // continuation byte, so a truncated sequence at the end is refused.
    struct Discard {
        void Put(char) {}
    } discard;
    rapidjson::MemoryStream in(s.data(), s.size());
    while (in.Tell() < s.size()) {
        if (!rapidjson::UTF8<>::Validate(in, discard)) return false;
    }
    return true;
}

std::string_view Request::header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
        if (iequals(k, name)) return v;
    }
    return {};
}

std::optional<std::string_view> Request::query_param(std::string_view name) const {
    for (const auto& [k, v] : query) {
        if (k == name) return std::string_view(v);
    }
    return std::nullopt;
}

std::string_view Request::path_param(std::string_view name) const {
    for (const auto& [k, v] : path_params) {
        if (k == name) return v;
    }
    return {};
}

Response Response::error(const Status& s) {
    Response r = json(s.http_status(), s.to_json());
    if (s.code() == Code::unauthenticated) {
        r.headers.emplace_back("WWW-Authenticate", s.message());
    }
    return r;
}

// The shared once-slot: the first call wins; the last copy going away
// uncalled answers 500 so the client never hangs.
struct Responder::State {
    State(SendFn f, GoneFlag g) : fn(std::move(f)), gone(std::move(g)) {}
    ~State() {
        if (!called.exchange(true, std::memory_order_acq_rel) && fn) {
            try {
                fn(Response::error(Status::internal("Handler did not respond")));
            } catch (...) {
                // A destructor must not throw; the connection's own timeout closes it.
            }
        }
    }
    SendFn fn;
    GoneFlag gone;
    std::atomic<bool> called{false};
};

Responder::Responder(SendFn fn, GoneFlag client_gone)
    : state_(std::make_shared<State>(std::move(fn), std::move(client_gone))) {}

bool Responder::abandoned() const {
    return state_ && state_->gone && state_->gone->load(std::memory_order_acquire);
}

void Responder::operator()(Response&& response) const {
    if (!state_) return;
    if (state_->called.exchange(true, std::memory_order_acq_rel)) return;
    state_->fn(std::move(response));
}

}  // namespace nk::net
