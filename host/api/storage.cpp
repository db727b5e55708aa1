#include "api/storage.hpp"

#include <rapidjson/document.h>

#include <cctype>
#include <string>
#include <vector>

#include "api/account_common.hpp"
#include "api/bearer.hpp"
#include "api/services.hpp"
#include "net/router.hpp"
#include "store/storage_json.hpp"
#include "store/storage_store.hpp"

namespace nk::api {
namespace {

using namespace account_detail;

const Status kBadUserId =
    Status::invalid_argument("Invalid user ID - make sure user ID is a valid UUID.");
const Status kBadKeys =
    Status::invalid_argument("Invalid collection or key value supplied. They must be set.");

bool is_uuid(std::string_view s) {
    if (s.size() != 36)
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i])))
            return false;
    }
    return s != store::kSystemUserId;
}

Status parse(std::string_view body, const JsonLimits& limits, rapidjson::Document& doc) {
    return parse_object(body, limits, doc);
}

net::Response write_objects(Services& services, std::string body, const RequestContext& caller) {
    const Hooks hooks(services, "WriteStorageObjects");
    if (auto s = hooks.before(caller, body); !s)
        return error(s);
    rapidjson::Document doc;
    if (auto s = parse(body, services.json, doc); !s)
        return error(s);
    std::vector<store::StorageWrite> writes;
    if (auto s = store::read_storage_writes(doc, "objects", writes); !s)
        return error(s);
    if (writes.empty())
        return net::Response::empty_object();
    for (auto& w : writes) {
        if (w.collection.empty() || w.key.empty() || w.value.empty())
            return error(kBadKeys);
        w.user_id.clear();  // a client writes its own objects
    }
    std::vector<store::StorageAck> acks;
    if (auto s = services.storage->storage_write(caller.user_id, writes, acks); !s)
        return error(s);
    std::string out = store::storage_acks_json(acks);
    hooks.after(caller, out, body);
    return net::Response::json(200, std::move(out));
}

net::Response read_objects(Services& services, std::string body, const RequestContext& caller) {
    const Hooks hooks(services, "ReadStorageObjects");
    if (auto s = hooks.before(caller, body); !s)
        return error(s);
    rapidjson::Document doc;
    if (auto s = parse(body, services.json, doc); !s)
        return error(s);
    std::vector<store::StorageId> ids;
    if (auto s = store::read_storage_ids(doc, "object_ids", ids); !s)
        return error(s);
    if (ids.empty())
        return net::Response::empty_object();
    for (const auto& id : ids) {
        if (id.collection.empty() || id.key.empty())
            return error(kBadKeys);
        if (!id.user_id.empty() && !is_uuid(id.user_id))
            return error(kBadUserId);
    }
    std::vector<store::StorageObject> objects;
    if (auto s = services.storage->storage_read(caller.user_id, ids, objects); !s)
        return error(s);
    std::string out = store::storage_objects_json(objects);
    hooks.after(caller, out, body);
    return net::Response::json(200, std::move(out));
}

struct ListRequest {
    std::string collection;
    std::string user_id;
    std::string cursor;
    std::string limit;  // as given ("" = Nakama's default, 1)
};

std::string list_request_json(const ListRequest& r) {
    std::string out = "{\"collection\":";
    append_json_string(out, r.collection);
    if (!r.user_id.empty()) {
        out += ",\"user_id\":";
        append_json_string(out, r.user_id);
    }
    if (!r.limit.empty())
        out += ",\"limit\":" + r.limit;
    if (!r.cursor.empty()) {
        out += ",\"cursor\":";
        append_json_string(out, r.cursor);
    }
    return out + "}";
}

net::Response list_objects(Services& services, ListRequest request, const RequestContext& caller) {
    const Hooks hooks(services, "ListStorageObjects");
    std::string in_json;
    if (hooks.has_before()) {
        in_json = list_request_json(request);
        if (auto s = hooks.before(caller, in_json); !s)
            return error(s);
        rapidjson::Document doc;
        if (auto s = parse(in_json, services.json, doc); !s)
            return error(s);
        ListRequest next;
        int limit = 0;
        for (auto [name, slot] : {std::pair{"collection", &next.collection},
                                  std::pair{"user_id", &next.user_id},
                                  std::pair{"cursor", &next.cursor}})
            if (auto s = store::json_detail::string_member(doc, name, *slot); !s)
                return error(s);
        if (doc.HasMember("limit")) {
            if (auto s = store::json_detail::int_member(doc, "limit", limit); !s)
                return error(s);
            next.limit = std::to_string(limit);
        }
        request = std::move(next);
    }
    int limit = 1;  // Nakama's default
    if (!request.limit.empty()) {
        char* end = nullptr;
        const long v = std::strtol(request.limit.c_str(), &end, 10);
        if (end == request.limit.c_str() || *end != '\0' || v < 1 || v > 100)
            return error(Status::invalid_argument("Invalid limit - limit must be between 1 and 100."));
        limit = static_cast<int>(v);
    }
    if (!request.user_id.empty() && !is_uuid(request.user_id))
        return error(kBadUserId);
    store::StoragePage page;
    if (auto s = services.storage->storage_list(caller.user_id, request.user_id,
                                                request.collection, limit, request.cursor, page);
        !s)
        return error(s);
    std::string out = store::storage_objects_json(page.objects, page.cursor);
    if (hooks.has_after())
        hooks.after(caller, out, in_json.empty() ? list_request_json(request) : in_json);
    return net::Response::json(200, std::move(out));
}

net::Response delete_objects(Services& services, std::string body, const RequestContext& caller) {
    const Hooks hooks(services, "DeleteStorageObjects");
    if (auto s = hooks.before(caller, body); !s)
        return error(s);
    rapidjson::Document doc;
    if (auto s = parse(body, services.json, doc); !s)
        return error(s);
    std::vector<store::StorageId> ids;
    if (auto s = store::read_storage_ids(doc, "object_ids", ids); !s)
        return error(s);
    if (ids.empty())
        return net::Response::empty_object();
    for (auto& id : ids) {
        if (id.collection.empty() || id.key.empty())
            return error(kBadKeys);
        id.user_id.clear();  // a client deletes its own objects
    }
    if (auto s = services.storage->storage_delete(caller.user_id, ids); !s)
        return error(s);
    hooks.after(caller, "", body);
    return net::Response::empty_object();
}

template <class Work>
void with_caller(Services& services, const net::Request& request, net::Responder respond,
                 Work work) {
    if (auto s = require_services(services); !s)
        return respond(error(s));
    if (services.storage == nullptr)
        return respond(error(Status::unimplemented("Storage is not available.")));
    RequestContext caller;
    if (auto s = authenticate_bearer(request, services, caller); !s)
        return respond(error(s));
    const std::size_t bytes = request.body.size();
    run_blocking(
        services, std::move(respond),
        [work = std::move(work), caller = std::move(caller)]() mutable { return work(caller); },
        bytes);
}

}  // namespace

void register_storage_routes(net::Router& router, Services& services) {
    // A route whose work takes the request body: fn(services, body, caller).
    const auto with_body = [&services](net::Response (*fn)(Services&, std::string,
                                                           const RequestContext&)) {
        return [&services, fn](net::Request&& request, net::Responder respond) {
            std::string body = request.body;
            with_caller(services, request, std::move(respond),
                        [&services, fn, body = std::move(body)](const RequestContext& c) mutable {
                            return fn(services, std::move(body), c);
                        });
        };
    };
    router.add(net::Method::put, "/v2/storage", with_body(&write_objects));
    router.add(net::Method::post, "/v2/storage", with_body(&read_objects));
    router.add(net::Method::put, "/v2/storage/delete", with_body(&delete_objects));
    auto list = [&services](net::Request&& request, net::Responder respond) {
        ListRequest r;
        r.collection = std::string(request.path_param("collection"));
        r.user_id = std::string(request.path_param("user_id"));
        if (r.user_id.empty())
            if (auto q = request.query_param("user_id"))
                r.user_id = std::string(*q);
        if (auto q = request.query_param("cursor"))
            r.cursor = std::string(*q);
        if (auto q = request.query_param("limit"))
            r.limit = std::string(*q);
        with_caller(services, request, std::move(respond),
                    [&services, r = std::move(r)](const RequestContext& c) mutable {
                        return list_objects(services, std::move(r), c);
                    });
    };
    router.add(net::Method::get, "/v2/storage/{collection}", list);
    router.add(net::Method::get, "/v2/storage/{collection}/{user_id}", list);
}

}  // namespace nk::api
