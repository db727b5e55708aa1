// The plugin-hook seam of the account endpoints, driven by an in-process
// RuntimeBridge standing in for the plugin side.
#include <mutex>
#include <vector>

#include "account_test_fixture.hpp"
#include "api/runtime_bridge.hpp"

using namespace nk;
using namespace nk::test;

namespace {

const char* kJson = "application/json";

struct HookCall {
    std::string kind;  // "before" or "after"
    std::string api_id;
    RequestContext ctx;
    std::string out_json;
    std::string in_json;
};

// Records every call; scripted behaviour per api id.
class RecordingBridge final : public api::RuntimeBridge {
  public:
    std::function<Status(std::string_view, std::string&)> before_fn;
    std::set<std::string, std::less<>> before_ids;
    std::set<std::string, std::less<>> after_ids;

    bool has_before(std::string_view id) const override { return before_ids.count(id) != 0; }
    bool has_after(std::string_view id) const override { return after_ids.count(id) != 0; }

    Status before(const Pin&, std::string_view id, const RequestContext& ctx, std::string& in_json) override {
        record({"before", std::string(id), ctx, "", in_json});
        return before_fn ? before_fn(id, in_json) : Status::ok();
    }
    void after(const Pin&, std::string_view id, const RequestContext& ctx, std::string_view out_json,
               std::string_view in_json) override {
        record({"after", std::string(id), ctx, std::string(out_json), std::string(in_json)});
        if (id == "GetAccount")
            throw std::runtime_error("hook failed");  // must not leak out
    }
    // In-process hooks do not change while a test runs: nothing to pin.
    Pin pin() const override { return nullptr; }
    bool has_before(const Pin&, std::string_view id) const override { return has_before(id); }
    bool has_after(const Pin&, std::string_view id) const override { return has_after(id); }
    bool has_rpc(std::string_view) const override { return false; }
    Status rpc(std::string_view, const RequestContext&, std::string_view, std::string&) override {
        return Status::unimplemented("no rpc");
    }

    std::vector<HookCall> calls() {
        std::lock_guard lock(mutex_);
        return calls_;
    }
    std::vector<HookCall> calls_of(const std::string& id) {
        std::vector<HookCall> out;
        for (auto& c : calls()) {
            if (c.api_id == id)
                out.push_back(c);
        }
        return out;
    }

  private:
    void record(HookCall c) {
        std::lock_guard lock(mutex_);
        calls_.push_back(std::move(c));
    }
    std::mutex mutex_;
    std::vector<HookCall> calls_;
};

const std::set<std::string, std::less<>> kAllIds = {
    "AuthenticateDevice", "AuthenticateCustom", "AuthenticateEmail", "SessionRefresh",
    "SessionLogout",      "GetAccount",         "UpdateAccount",     "DeleteAccount"};

}  // namespace

TEST_CASE("every account endpoint calls its before and after hooks with Nakama's arguments") {
    RecordingBridge bridge;
    bridge.before_ids = kAllIds;
    bridge.after_ids = kAllIds;
    AccountServer::Config config;
    config.runtime = &bridge;
    AccountServer srv(config);
    auto c = srv.client();

    auto res = c.Post("/v2/account/authenticate/device?create=true&username=hooked", basic(),
                      R"({"id":"device-hook-01","vars":{"v":"1"}})", kJson);
    auto s = session_from(res);
    {
        auto calls = bridge.calls_of("AuthenticateDevice");
        REQUIRE(calls.size() == 2);
        CHECK(calls[0].kind == "before");
        CHECK(calls[0].ctx.execution_mode == "before");
        CHECK(calls[0].ctx.user_id.empty());
        CHECK(calls[0].ctx.client_ip == "127.0.0.1");
        CHECK(
            calls[0].in_json ==
            R"({"account":{"id":"device-hook-01","vars":{"v":"1"}},"create":true,"username":"hooked"})");
        CHECK(calls[1].kind == "after");
        CHECK(calls[1].ctx.execution_mode == "after");
        CHECK(calls[1].ctx.user_id == s.user_id);
        CHECK(calls[1].ctx.username == "hooked");
        CHECK(calls[1].ctx.vars.at("v") == "1");
        CHECK(calls[1].ctx.session_expiry == token_payload(s.token)["exp"].GetInt64());
        CHECK(calls[1].out_json == res->body);
        CHECK(calls[1].in_json == calls[0].in_json);
    }

    session_from(
        c.Post("/v2/account/authenticate/custom", basic(), R"({"id":"custom-hook"})", kJson));
    session_from(c.Post("/v2/account/authenticate/email", basic(),
                        R"({"email":"hook@example.com","password":"password1"})", kJson));
    CHECK(bridge.calls_of("AuthenticateCustom").size() == 2);
    {
        auto calls = bridge.calls_of("AuthenticateEmail");
        REQUIRE(calls.size() == 2);
        CHECK(calls[0].in_json ==
              R"({"account":{"email":"hook@example.com","password":"password1"}})");
    }

    // GetAccount: after-hook gets only out; its failure does not change the response.
    auto account = c.Get("/v2/account", bearer(s.token));
    REQUIRE(account);
    CHECK(account->status == 200);
    {
        auto calls = bridge.calls_of("GetAccount");
        REQUIRE(calls.size() == 2);
        CHECK(calls[0].in_json.empty());
        CHECK(calls[0].ctx.user_id == s.user_id);
        CHECK(calls[1].out_json == account->body);
        CHECK(calls[1].in_json.empty());
    }

    // UpdateAccount: after-hook gets only in.
    REQUIRE(
        c.Put("/v2/account", bearer(s.token), R"({"display_name":"Hooked","location":""})", kJson)
            ->status == 200);
    {
        auto calls = bridge.calls_of("UpdateAccount");
        REQUIRE(calls.size() == 2);
        CHECK(calls[1].out_json.empty());
        CHECK(calls[1].in_json == R"({"display_name":"Hooked","location":""})");
        CHECK(calls[1].ctx.username == "hooked");
    }

    auto refreshed = c.Post("/v2/account/session/refresh", basic(),
                            "{\"token\":\"" + s.refresh_token + "\"}", kJson);
    REQUIRE(refreshed->status == 200);
    {
        auto calls = bridge.calls_of("SessionRefresh");
        REQUIRE(calls.size() == 2);
        CHECK(calls[0].in_json == "{\"token\":\"" + s.refresh_token + "\"}");
        CHECK(calls[1].out_json == refreshed->body);
        CHECK(calls[1].ctx.user_id == s.user_id);
    }

    REQUIRE(c.Post("/v2/session/logout", bearer(s.token), "{\"token\":\"" + s.token + "\"}", kJson)
                ->status == 200);
    {
        auto calls = bridge.calls_of("SessionLogout");
        REQUIRE(calls.size() == 2);
        CHECK(calls[1].in_json == "{\"token\":\"" + s.token + "\"}");
        CHECK(calls[1].out_json.empty());
    }

    auto d = authenticate_device(c, "device-hook-01");
    REQUIRE(c.Delete("/v2/account", bearer(d.token))->status == 200);
    {
        auto calls = bridge.calls_of("DeleteAccount");
        REQUIRE(calls.size() == 2);
        CHECK(calls[0].in_json.empty());
        CHECK(calls[1].in_json.empty());
        CHECK(calls[1].out_json.empty());
        CHECK(calls[1].ctx.user_id == d.user_id);
    }
}

TEST_CASE("a before-hook may rewrite the input or reject the call") {
    RecordingBridge bridge;
    bridge.before_ids = {"AuthenticateDevice", "GetAccount", "UpdateAccount"};
    bridge.after_ids = {"AuthenticateDevice"};
    bridge.before_fn = [](std::string_view id, std::string& in) -> Status {
        if (id == "AuthenticateDevice") {
            if (in.find("reject-me") != std::string::npos) {
                return Status::permission_denied("Denied by hook.");
            }
            in = R"({"account":{"id":"rewritten-device"},"username":"fromhook"})";
        } else if (id == "GetAccount") {
            return Status::not_found("Requested resource was not found.");
        } else if (id == "UpdateAccount") {
            in = R"({"display_name":"chosen by hook"})";
        }
        return Status::ok();
    };
    AccountServer::Config config;
    config.runtime = &bridge;
    AccountServer srv(config);
    auto c = srv.client();

    auto s = authenticate_device(c, "device-original");
    CHECK(std::string(token_payload(s.token)["usn"].GetString()) == "fromhook");
    auto after = bridge.calls_of("AuthenticateDevice").back();
    CHECK(after.kind == "after");
    CHECK(after.in_json == R"({"account":{"id":"rewritten-device"},"username":"fromhook"})");

    check_error(
        c.Post("/v2/account/authenticate/device", basic(), R"({"id":"reject-me-please"})", kJson),
        403, 7, "Denied by hook.");
    // The rejected call created nothing.
    check_error(c.Post("/v2/account/authenticate/device?create=false", basic(),
                       R"({"id":"reject-me-please"})", kJson),
                403, 7, "Denied by hook.");

    check_error(c.Get("/v2/account", bearer(s.token)), 404, 5, "Requested resource was not found.");

    REQUIRE(
        c.Put("/v2/account", bearer(s.token), R"({"display_name":"from client"})", kJson)->status ==
        200);
    store::Account account;
    REQUIRE(srv.store->get_account(s.user_id, account).is_ok());
    CHECK(account.display_name == "chosen by hook");
    CHECK(account.devices == std::vector<std::string>{"rewritten-device"});
}
