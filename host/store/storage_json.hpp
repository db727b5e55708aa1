// Storage objects and wallets as JSON, the way the REST API and the plugin ABI speak them
// (Nakama's shapes: docs/storage.md). Header-only (the runtime uses it without linking the
// SQLite store). Readers take an already parsed document (parsed with the depth limit);
// writers never recurse into values (a value is written as the string it is).
#pragma once

#include <rapidjson/document.h>

#include <string>
#include <vector>

#include "core/status.hpp"
#include "store/account_json.hpp"
#include "store/storage_store.hpp"

namespace nk::store {

inline void append_storage_object(std::string& out, const StorageObject& o) {
    out += "{\"collection\":";
    append_json_string(out, o.collection);
    out += ",\"key\":";
    append_json_string(out, o.key);
    out += ",\"user_id\":";
    append_json_string(out, o.user_id);
    out += ",\"value\":";
    append_json_string(out, o.value);
    out += ",\"version\":";
    append_json_string(out, o.version);
    // Zero is omitted, as protobuf's JSON does.
    if (o.permission_read != 0)
        out += ",\"permission_read\":" + std::to_string(o.permission_read);
    if (o.permission_write != 0)
        out += ",\"permission_write\":" + std::to_string(o.permission_write);
    if (o.create_time != 0) {
        out += ",\"create_time\":";
        append_json_string(out, detail::rfc3339_seconds(o.create_time));
    }
    if (o.update_time != 0) {
        out += ",\"update_time\":";
        append_json_string(out, detail::rfc3339_seconds(o.update_time));
    }
    out += '}';
}

// {"objects":[...],"cursor":"..."}; {} when empty (Nakama omits empty lists).
inline std::string storage_objects_json(const std::vector<StorageObject>& objects,
                                        const std::string& cursor = {}) {
    std::string out = "{";
    if (!objects.empty()) {
        out += "\"objects\":[";
        for (std::size_t i = 0; i < objects.size(); ++i) {
            if (i > 0)
                out += ',';
            append_storage_object(out, objects[i]);
        }
        out += ']';
    }
    if (!cursor.empty()) {
        if (out.size() > 1)
            out += ',';
        out += "\"cursor\":";
        append_json_string(out, cursor);
    }
    out += '}';
    return out;
}

inline void append_acks(std::string& out, const std::vector<StorageAck>& acks) {
    out += '[';
    for (std::size_t i = 0; i < acks.size(); ++i) {
        if (i > 0)
            out += ',';
        out += "{\"collection\":";
        append_json_string(out, acks[i].collection);
        out += ",\"key\":";
        append_json_string(out, acks[i].key);
        out += ",\"version\":";
        append_json_string(out, acks[i].version);
        out += ",\"user_id\":";
        append_json_string(out, acks[i].user_id);
        out += '}';
    }
    out += ']';
}

// {"acks":[...]}; {} when empty.
inline std::string storage_acks_json(const std::vector<StorageAck>& acks) {
    if (acks.empty())
        return "{}";
    std::string out = "{\"acks\":";
    append_acks(out, acks);
    out += '}';
    return out;
}

inline void append_wallet(std::string& out, const Wallet& w) {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : w) {
        if (!first)
            out += ',';
        first = false;
        append_json_string(out, k);
        out += ':' + std::to_string(v);
    }
    out += '}';
}

namespace json_detail {
inline Status string_member(const rapidjson::Value& o, const char* name, std::string& out) {
    auto it = o.FindMember(name);
    if (it == o.MemberEnd() || it->value.IsNull())
        return Status::ok();
    if (!it->value.IsString())
        return Status::invalid_argument(std::string("Invalid ") + name + ": must be a string.");
    out.assign(it->value.GetString(), it->value.GetStringLength());
    return Status::ok();
}
// A permission: a number (or {"value":n}, protobuf's wrapper as some clients send it).
inline Status int_member(const rapidjson::Value& o, const char* name, int& out) {
    auto it = o.FindMember(name);
    if (it == o.MemberEnd() || it->value.IsNull())
        return Status::ok();
    const rapidjson::Value* v = &it->value;
    if (v->IsObject()) {
        auto inner = v->FindMember("value");
        if (inner == v->MemberEnd())
            return Status::ok();
        v = &inner->value;
    }
    if (!v->IsInt())
        return Status::invalid_argument(std::string("Invalid ") + name + ": must be a number.");
    out = v->GetInt();
    return Status::ok();
}
inline Status array_member(const rapidjson::Value& doc, const char* name,
                           const rapidjson::Value*& out) {
    out = nullptr;
    if (!doc.IsObject())
        return Status::invalid_argument("Request must be a JSON object.");
    auto it = doc.FindMember(name);
    if (it == doc.MemberEnd() || it->value.IsNull())
        return Status::ok();
    if (!it->value.IsArray())
        return Status::invalid_argument(std::string("Invalid ") + name + ": must be an array.");
    out = &it->value;
    return Status::ok();
}
}  // namespace json_detail

// {"objects":[{"collection","key","user_id","value","version","permission_read",
// "permission_write"}]}: permissions default to 1 (owner).
inline Status read_storage_writes(const rapidjson::Value& doc, const char* member,
                                  std::vector<StorageWrite>& out) {
    const rapidjson::Value* arr = nullptr;
    if (Status st = json_detail::array_member(doc, member, arr); !st || arr == nullptr)
        return st;
    for (const auto& e : arr->GetArray()) {
        if (!e.IsObject())
            return Status::invalid_argument("Invalid storage object: must be a JSON object.");
        StorageWrite w;
        for (auto [name, slot] : {std::pair{"collection", &w.collection}, std::pair{"key", &w.key},
                                  std::pair{"user_id", &w.user_id}, std::pair{"value", &w.value},
                                  std::pair{"version", &w.version}})
            if (Status st = json_detail::string_member(e, name, *slot); !st)
                return st;
        if (Status st = json_detail::int_member(e, "permission_read", w.permission_read); !st)
            return st;
        if (Status st = json_detail::int_member(e, "permission_write", w.permission_write); !st)
            return st;
        out.push_back(std::move(w));
    }
    return Status::ok();
}

// {"object_ids":[{"collection","key","user_id","version"}]}.
inline Status read_storage_ids(const rapidjson::Value& doc, const char* member,
                               std::vector<StorageId>& out) {
    const rapidjson::Value* arr = nullptr;
    if (Status st = json_detail::array_member(doc, member, arr); !st || arr == nullptr)
        return st;
    for (const auto& e : arr->GetArray()) {
        if (!e.IsObject())
            return Status::invalid_argument("Invalid storage object id: must be a JSON object.");
        StorageId id;
        for (auto [name, slot] : {std::pair{"collection", &id.collection},
                                  std::pair{"key", &id.key}, std::pair{"user_id", &id.user_id},
                                  std::pair{"version", &id.version}})
            if (Status st = json_detail::string_member(e, name, *slot); !st)
                return st;
        out.push_back(std::move(id));
    }
    return Status::ok();
}

}  // namespace nk::store
