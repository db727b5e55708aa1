#include "auth/tokens.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <rapidjson/document.h>

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "auth/base64.hpp"
#include "core/json_read.hpp"
#include "core/json_write.hpp"
#include "core/uuid.hpp"

namespace nk::auth {
namespace {

constexpr std::string_view kHeaderB64 =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";  // {"alg":"HS256","typ":"JWT"}
constexpr std::size_t kMaxTokenBytes = 16 * 1024;
// Token JSON is flat (a two-member header, our claims); the default depth limit bounds a forged
// header, which is read before the signature is checked.
const JsonLimits kTokenJsonLimits;

// HMAC-SHA256 with the key schedule kept per thread. OpenSSL 3's one-shot HMAC() fetches the
// algorithm from the provider store (a global read lock) and sets the key up on every call,
// which cost more than the MAC itself on the request path. Each thread keeps an EVP_MAC_CTX
// per key (session and refresh keys: two in practice) and re-initialises it without a key,
// which restarts the MAC with the same key.
class HmacCache {
  public:
    ~HmacCache() {
        for (Entry& e : entries_)
            EVP_MAC_CTX_free(e.ctx);
    }

    bool sign(std::string_view key, std::string_view data, unsigned char* out, size_t* len) {
        EVP_MAC_CTX* ctx = context_for(key);
        return ctx != nullptr && EVP_MAC_init(ctx, nullptr, 0, nullptr) == 1 &&
               EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()),
                              data.size()) == 1 &&
               EVP_MAC_final(ctx, out, len, EVP_MAX_MD_SIZE) == 1;
    }

  private:
    struct Entry {
        std::string key;
        EVP_MAC_CTX* ctx = nullptr;
    };
    static constexpr std::size_t max_entries = 4;

    static EVP_MAC* algorithm() {
        static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
        return mac;
    }

    EVP_MAC_CTX* context_for(std::string_view key) {
        for (std::size_t i = 0; i < entries_.size(); ++i) {
            if (entries_[i].key == key) {
                if (i != 0)
                    std::swap(entries_[i], entries_[0]);  // most recently used first
                return entries_[0].ctx;
            }
        }
        if (algorithm() == nullptr)
            return nullptr;
        EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(algorithm());
        char digest[] = "SHA256";
        const OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end()};
        // An empty key still needs a non-null pointer to count as "set the key".
        static const unsigned char empty = 0;
        const auto* k = key.empty() ? &empty : reinterpret_cast<const unsigned char*>(key.data());
        if (ctx == nullptr || EVP_MAC_init(ctx, k, key.size(), params) != 1) {
            EVP_MAC_CTX_free(ctx);
            return nullptr;
        }
        if (entries_.size() == max_entries) {
            EVP_MAC_CTX_free(entries_.back().ctx);
            entries_.pop_back();
        }
        entries_.insert(entries_.begin(), Entry{std::string(key), ctx});
        return ctx;
    }

    std::vector<Entry> entries_;
};

std::string hmac_sha256(std::string_view key, std::string_view data) {
    thread_local HmacCache cache;
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t len = 0;
    if (!cache.sign(key, data, md, &len))
        throw std::runtime_error("HMAC-SHA256 failed");
    return std::string(reinterpret_cast<const char*>(md), len);
}

std::optional<std::int64_t> as_seconds(const rapidjson::Value& v) {
    if (v.IsInt64())
        return v.GetInt64();
    if (v.IsUint64())
        return std::nullopt;  // beyond int64
    if (v.IsDouble()) {
        const double d = v.GetDouble();
        if (!std::isfinite(d) || d > 9.2e18 || d < -9.2e18)
            return std::nullopt;
        return static_cast<std::int64_t>(d);
    }
    return std::nullopt;
}

bool valid_header(std::string_view header_b64) {
    if (header_b64 == kHeaderB64)
        return true;  // our own and Nakama's header, the common case
    auto json = base64url_decode(header_b64);
    if (!json)
        return false;
    rapidjson::Document doc;
    if (!parse_json(*json, doc, kTokenJsonLimits) || !doc.IsObject())
        return false;
    auto alg = doc.FindMember("alg");
    return alg != doc.MemberEnd() && alg->value.IsString() &&
           std::string_view(alg->value.GetString(), alg->value.GetStringLength()) == "HS256";
}

std::optional<TokenClaims> decode_claims(std::string_view payload_b64) {
    auto json = base64url_decode(payload_b64);
    if (!json)
        return std::nullopt;
    rapidjson::Document doc;
    if (!parse_json(*json, doc, kTokenJsonLimits) || !doc.IsObject())
        return std::nullopt;
    TokenClaims c;
    auto string_claim = [&](const char* name, std::string& out, bool required) {
        auto it = doc.FindMember(name);
        if (it == doc.MemberEnd())
            return !required;
        if (!it->value.IsString())
            return false;
        out.assign(it->value.GetString(), it->value.GetStringLength());
        return true;
    };
    if (!string_claim("tid", c.token_id, false) || !string_claim("uid", c.user_id, true) ||
        !string_claim("usn", c.username, false)) {
        return std::nullopt;
    }
    if (!is_uuid(c.user_id))
        return std::nullopt;
    if (auto it = doc.FindMember("vrs"); it != doc.MemberEnd() && !it->value.IsNull()) {
        if (!it->value.IsObject())
            return std::nullopt;
        for (const auto& m : it->value.GetObject()) {
            if (!m.value.IsString())
                return std::nullopt;
            c.vars.emplace(std::string(m.name.GetString(), m.name.GetStringLength()),
                           std::string(m.value.GetString(), m.value.GetStringLength()));
        }
    }
    auto exp = doc.FindMember("exp");
    if (exp == doc.MemberEnd())
        return std::nullopt;
    auto exp_value = as_seconds(exp->value);
    if (!exp_value)
        return std::nullopt;
    c.expires_at = *exp_value;
    if (auto iat = doc.FindMember("iat"); iat != doc.MemberEnd()) {
        auto iat_value = as_seconds(iat->value);
        if (!iat_value)
            return std::nullopt;
        c.issued_at = *iat_value;
    }
    return c;
}

std::string claims_json(const TokenClaims& c) {
    std::string out = "{\"tid\":";
    append_json_string(out, c.token_id);
    out += ",\"uid\":";
    append_json_string(out, c.user_id);
    out += ",\"usn\":";
    append_json_string(out, c.username);
    if (!c.vars.empty()) {
        out += ",\"vrs\":";
        append_json_string_map(out, c.vars);
    }
    out += ",\"exp\":";
    out += std::to_string(c.expires_at);
    out += ",\"iat\":";
    out += std::to_string(c.issued_at);
    out += '}';
    return out;
}

std::int64_t system_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool is_uuid(std::string_view s) {
    if (s.size() != 36)
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

Status Tokens::validate(const Options& o) {
    if (o.server_key.empty())
        return Status::invalid_argument("socket.server_key must not be empty");
    if (o.encryption_key.empty())
        return Status::invalid_argument("session.encryption_key must not be empty");
    if (o.refresh_encryption_key.empty())
        return Status::invalid_argument("session.refresh_encryption_key must not be empty");
    if (o.encryption_key == o.refresh_encryption_key)
        return Status::invalid_argument(
            "session.encryption_key and session.refresh_encryption_key must be different");
    if (o.token_expiry_sec <= 0)
        return Status::invalid_argument("session.token_expiry_sec must be greater than 0");
    if (o.refresh_token_expiry_sec <= 0)
        return Status::invalid_argument("session.refresh_token_expiry_sec must be greater than 0");
    return Status::ok();
}

namespace {
Options checked(Options o) {
    if (auto s = Tokens::validate(o); !s)
        throw std::invalid_argument(s.message());
    return o;
}
}  // namespace

Tokens::Tokens(Options options, Clock clock)
    : options_(checked(std::move(options))),
      clock_(clock ? std::move(clock) : Clock(system_now)),
      revocations_(std::max(options_.token_expiry_sec, options_.refresh_token_expiry_sec) + 1) {}

std::int64_t Tokens::now() const {
    return clock_();
}

std::string Tokens::sign_with(const TokenClaims& claims, const std::string& key) const {
    std::string token(kHeaderB64);
    token += '.';
    token += base64url_encode(claims_json(claims));
    const std::string mac = hmac_sha256(key, token);
    token += '.';
    token += base64url_encode(mac);
    return token;
}

std::string Tokens::sign(const TokenClaims& claims, TokenKind kind) const {
    return sign_with(claims, kind == TokenKind::session ? options_.encryption_key
                                                        : options_.refresh_encryption_key);
}

IssuedSession Tokens::issue(const std::string& user_id, const std::string& username,
                            const std::map<std::string, std::string>& vars) {
    const std::int64_t t = now();
    if (options_.single_session) {
        revocations_.revoke_user(user_id, t);
        publish({Revocation::Kind::user, user_id, "", t, 0});
    }
    TokenClaims c;
    c.token_id = random_uuid_v4();
    c.user_id = user_id;
    c.username = username;
    c.vars = vars;
    c.issued_at = t;
    revocations_.note_issued(user_id, c.token_id, t);
    if (publisher_ && revocations_.invalidated_at(user_id, t))
        publish({Revocation::Kind::issued, user_id, c.token_id, t, 0});
    return reissue(c, username, vars);
}

IssuedSession Tokens::reissue(const TokenClaims& refresh, const std::string& username,
                              const std::map<std::string, std::string>& vars) {
    const std::int64_t t = now();
    TokenClaims c = refresh;
    c.username = username;
    c.vars = vars;
    IssuedSession out;
    c.expires_at = t + options_.refresh_token_expiry_sec;
    out.refresh_expires_at = c.expires_at;
    out.refresh_token = sign(c, TokenKind::refresh);
    c.expires_at = t + options_.token_expiry_sec;
    out.token = sign(c, TokenKind::session);
    out.session = std::move(c);
    revocations_.restore_session(out.session.token_id);
    return out;
}

std::optional<TokenClaims> Tokens::parse(std::string_view token, TokenKind kind) const {
    if (token.size() > kMaxTokenBytes)
        return std::nullopt;
    const auto dot1 = token.find('.');
    if (dot1 == std::string_view::npos)
        return std::nullopt;
    const auto dot2 = token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
        return std::nullopt;
    }
    if (!valid_header(token.substr(0, dot1)))
        return std::nullopt;
    auto signature = base64url_decode(token.substr(dot2 + 1));
    if (!signature)
        return std::nullopt;
    const std::string& key =
        kind == TokenKind::session ? options_.encryption_key : options_.refresh_encryption_key;
    const std::string expected = hmac_sha256(key, token.substr(0, dot2));
    if (!constant_time_equal(*signature, expected))
        return std::nullopt;
    auto claims = decode_claims(token.substr(dot1 + 1, dot2 - dot1 - 1));
    if (!claims || claims->expires_at <= now())
        return std::nullopt;
    return claims;
}

std::optional<TokenClaims> Tokens::verify_session(std::string_view token) const {
    auto c = parse(token, TokenKind::session);
    if (!c || !revocations_.session_valid(c->user_id, c->token_id, c->issued_at)) {
        return std::nullopt;
    }
    return c;
}

std::optional<TokenClaims> Tokens::verify_refresh(std::string_view token) const {
    auto c = parse(token, TokenKind::refresh);
    if (!c || !revocations_.refresh_valid(c->user_id, c->token_id, c->issued_at)) {
        return std::nullopt;
    }
    return c;
}

void Tokens::revoke_session(const TokenClaims& claims) {
    const std::int64_t t = now();
    revocations_.revoke_session(claims.token_id, claims.expires_at, t);
    publish({Revocation::Kind::session, claims.user_id, claims.token_id, t, claims.expires_at});
}

void Tokens::revoke_refresh(const TokenClaims& claims) {
    const std::int64_t t = now();
    revocations_.revoke_refresh(claims.token_id, claims.expires_at, t);
    publish({Revocation::Kind::refresh, claims.user_id, claims.token_id, t, claims.expires_at});
}

void Tokens::revoke_user(const std::string& user_id) {
    const std::int64_t t = now();
    revocations_.revoke_user(user_id, t);
    publish({Revocation::Kind::user, user_id, "", t, 0});
}

void Tokens::set_publisher(std::function<void(const Revocation&)> publisher) {
    publisher_ = std::move(publisher);
}

void Tokens::publish(Revocation r) const {
    if (!publisher_)
        return;
    // User-level entries (and the exemptions from them) matter while any token issued before
    // them could still be presented.
    if (r.expires_at == 0)
        r.expires_at =
            r.at + std::max(options_.token_expiry_sec, options_.refresh_token_expiry_sec) + 1;
    publisher_(r);
}

void Tokens::apply(const Revocation& r) {
    const std::int64_t t = now();
    switch (r.kind) {
        case Revocation::Kind::session: revocations_.revoke_session(r.token_id, r.expires_at, t); break;
        case Revocation::Kind::refresh: revocations_.revoke_refresh(r.token_id, r.expires_at, t); break;
        case Revocation::Kind::user: revocations_.revoke_user(r.user_id, r.at); break;
        case Revocation::Kind::issued: revocations_.note_issued(r.user_id, r.token_id, r.at); break;
    }
}

Status Tokens::check_server_key(std::string_view authorization) const {
    if (authorization.empty())
        return Status::unauthenticated("Server key required");
    const Status invalid = Status::unauthenticated("Server key invalid");
    constexpr std::string_view prefix = "basic ";
    if (authorization.size() < prefix.size())
        return invalid;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        const char c = authorization[i];
        if ((c >= 'A' && c <= 'Z' ? char(c + 32) : c) != prefix[i])
            return invalid;
    }
    auto decoded = base64_decode(authorization.substr(prefix.size()));
    if (!decoded)
        return invalid;
    const auto colon = decoded->find(':');
    if (colon == std::string::npos)
        return invalid;
    if (!constant_time_equal(std::string_view(*decoded).substr(0, colon), options_.server_key)) {
        return invalid;
    }
    return Status::ok();
}

bool Tokens::check_http_key(std::string_view key) const {
    return constant_time_equal(key, options_.http_key);
}

}  // namespace nk::auth
