// A gameplay plugin keeping state: items in storage, gold in the wallet, changed together.
//
//   RPC "claim_welcome"  100 gold, once per player (a storage marker written with version "*"
//                        and the wallet credit in one transaction: claiming twice, even at
//                        the same moment, pays once)
//   RPC "buy_item"       {"item":"sword"} -> {"item":"sword","count":N,"gold":G}: the item is
//                        added to the player's inventory and its price charged in one
//                        transaction (nk.MultiUpdate); not enough gold changes nothing
//   RPC "inventory"      the player's items
//
// Inventory objects are written with permission_write 0: clients can read their inventory
// (GET /v2/storage/inventory/<user id>) but not write it. The wallet changes only through the
// server (nk.WalletUpdate / nk.MultiUpdate), never by a client.
#include <nk/json_read.hpp>
#include <nk/sdk.hpp>

#include <map>
#include <string>

#include <rapidjson/document.h>

namespace {

const std::map<std::string, std::int64_t> kPrices = {{"sword", 30}, {"shield", 20}, {"potion", 5}};
constexpr int kAttempts = 8;  // concurrent buys of one item retry on a version conflict

bool starts_with(const std::string& s, const char* prefix) {
    return s.rfind(prefix, 0) == 0;
}

std::int64_t count_of(const std::string& value) {
    rapidjson::Document d;
    if (!nk::json_read::parse_document(value.data(), value.size(), d,
                                       nk::json_read::kDefaultMaxDepth) ||
        !d.IsObject() || !d.HasMember("count") || !d["count"].IsInt64())
        return 0;
    return d["count"].GetInt64();
}

std::string item_of(const std::string& payload) {
    rapidjson::Document d;
    if (!nk::json_read::parse_document(payload.data(), payload.size(), d,
                                       nk::json_read::kDefaultMaxDepth) ||
        !d.IsObject() || !d.HasMember("item") || !d["item"].IsString())
        return {};
    return d["item"].GetString();
}

nk::Error claim_welcome(const nk::Context& ctx, nk::Logger&, nk::Module& nk, const std::string&,
                        std::string& out) {
    if (ctx.user_id.empty())
        return nk::Error::InvalidArgument("a session is required");
    nk::StorageWrite marker;
    marker.collection = "rewards";
    marker.key = "welcome";
    marker.user_id = ctx.user_id;
    marker.value = "{\"claimed\":true}";
    marker.version = "*";  // only if absent: the claim happens once
    marker.permission_read = 1;
    marker.permission_write = 0;
    std::vector<nk::WalletUpdateResult> wallets;
    nk::Error err = nk.MultiUpdate(ctx, {marker}, {}, {{ctx.user_id, {{"gold", 100}}, "{\"reason\":\"welcome\"}"}},
                                   true, nullptr, &wallets);
    if (err && starts_with(err.message(), "Storage write rejected - version check failed"))
        return {NK_ALREADY_EXISTS, "welcome gold already claimed"};
    if (err)
        return err;
    out = "{\"gold\":" + std::to_string(wallets.at(0).updated["gold"]) + "}";
    return {};
}

nk::Error buy_item(const nk::Context& ctx, nk::Logger& logger, nk::Module& nk,
                   const std::string& payload, std::string& out) {
    if (ctx.user_id.empty())
        return nk::Error::InvalidArgument("a session is required");
    const std::string item = item_of(payload);
    const auto price = kPrices.find(item);
    if (price == kPrices.end())
        return nk::Error::InvalidArgument("unknown item");
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
        std::vector<nk::StorageObject> current;
        if (auto err = nk.StorageRead(ctx, {{"inventory", item, ctx.user_id}}, current))
            return err;
        const std::int64_t count = current.empty() ? 0 : count_of(current[0].value);
        nk::StorageWrite w;
        w.collection = "inventory";
        w.key = item;
        w.user_id = ctx.user_id;
        w.value = "{\"count\":" + std::to_string(count + 1) + "}";
        w.version = current.empty() ? "*" : current[0].version;  // unchanged since we read it
        w.permission_read = 1;
        w.permission_write = 0;  // clients read it, only the server writes it
        std::vector<nk::WalletUpdateResult> wallets;
        nk::Error err = nk.MultiUpdate(
            ctx, {w}, {}, {{ctx.user_id, {{"gold", -price->second}}, "{\"item\":\"" + item + "\"}"}},
            true, nullptr, &wallets);
        if (!err) {
            out = "{\"item\":\"" + item + "\",\"count\":" + std::to_string(count + 1) +
                  ",\"gold\":" + std::to_string(wallets.at(0).updated["gold"]) + "}";
            return {};
        }
        if (starts_with(err.message(), "wallet update rejected negative value"))
            return {NK_FAILED_PRECONDITION, "not enough gold"};
        if (!starts_with(err.message(), "Storage write rejected - version check failed"))
            return err;
        // Another purchase of the same item landed in between: read again and retry.
    }
    logger.Warn("buy_item %s: gave up after %d conflicting attempts", item.c_str(), kAttempts);
    return {NK_ABORTED, "too many concurrent purchases, try again"};
}

nk::Error inventory(const nk::Context& ctx, nk::Logger&, nk::Module& nk, const std::string&,
                    std::string& out) {
    if (ctx.user_id.empty())
        return nk::Error::InvalidArgument("a session is required");
    std::vector<nk::StorageObject> objects;
    std::string cursor;
    if (auto err = nk.StorageList(ctx, ctx.user_id, ctx.user_id, "inventory", 100, "", objects,
                                  cursor))
        return err;
    out = "{";
    for (std::size_t i = 0; i < objects.size(); ++i) {
        if (i > 0)
            out += ",";
        out += "\"" + objects[i].key + "\":" + std::to_string(count_of(objects[i].value));
    }
    out += "}";
    return {};
}

}  // namespace

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    if (auto err = initializer.RegisterRpc("claim_welcome", claim_welcome))
        return err;
    if (auto err = initializer.RegisterRpc("buy_item", buy_item))
        return err;
    if (auto err = initializer.RegisterRpc("inventory", inventory))
        return err;
    logger.Info("inventory plugin loaded");
    return {};
}
