// Storage objects over REST, as Nakama's client API (docs/storage.md):
//   PUT  /v2/storage                        write objects (the caller's), atomically
//   POST /v2/storage                        read objects by id (what the caller may read)
//   GET  /v2/storage/{collection}           list (?user_id=&limit=&cursor=)
//   GET  /v2/storage/{collection}/{user_id} list one user's objects
//   PUT  /v2/storage/delete                 delete objects (the caller's), atomically
// Bearer session required; before/after hooks WriteStorageObjects, ReadStorageObjects,
// ListStorageObjects, DeleteStorageObjects. Store calls run on the blocking pool.
#pragma once

namespace nk::net {
class Router;
}

namespace nk::api {

struct Services;

void register_storage_routes(net::Router& router, Services& services);

}  // namespace nk::api
