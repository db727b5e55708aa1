// The storage request readers (REST and plugin ABI): any body, parsed with the depth limit,
// read as writes and as object ids, then re-encoded.
#include <rapidjson/document.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/json_read.hpp"
#include "store/storage_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    nk::JsonLimits limits;
    rapidjson::Document doc;
    if (!nk::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), doc, limits))
        return 0;
    std::vector<nk::store::StorageWrite> writes;
    std::vector<nk::store::StorageId> ids;
    (void)nk::store::read_storage_writes(doc, "objects", writes);
    (void)nk::store::read_storage_ids(doc, "object_ids", ids);
    std::vector<nk::store::StorageObject> objects;
    for (const auto& w : writes)
        objects.push_back({w.collection, w.key, w.user_id, w.value, w.version, w.permission_read,
                           w.permission_write, 0, 0});
    (void)nk::store::storage_objects_json(objects, "cursor");
    return 0;
}
